//! AF_XDP sockets, UMEM and rings (work in progress).
