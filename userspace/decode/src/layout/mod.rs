//! The declarative binary schema decoder (`schema` in the config). Work in progress.
