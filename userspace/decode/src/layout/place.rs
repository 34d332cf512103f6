//! Where each field of a list sits: offsets given or following, the no-overlap rule and
//! its one exception (bit fields sharing an integer), and unique names along a path.

use super::{
    compile::{MAX_PAYLOAD, error},
    config::{ByteOrder, FieldConfig},
    field::{self, FieldSpec},
};
use crate::ConfigFieldError;

/// A field with its place.
#[derive(Debug)]
pub(super) struct Placed {
    /// Field (and column) name.
    pub(super) name: String,
    /// `fields[2]`, for messages.
    pub(super) path: String,
    /// Its `type` as written, for messages.
    pub(super) ty: String,
    /// Its first byte (from the payload's or the element's start).
    pub(super) offset: usize,
    /// Its type, resolved, with reads placed at `offset`.
    pub(super) spec: FieldSpec,
    /// Not a column.
    pub(super) skip: bool,
}

/// The fields of one list, placed.
#[derive(Debug)]
pub(super) struct PlacedList {
    pub(super) fields: Vec<Placed>,
    /// One past the last byte of the list (at least the list's start).
    pub(super) end: usize,
}

/// Bit fields sharing the same bytes.
struct Word {
    offset: usize,
    size: usize,
    bits: u64,
    name: String,
}

/// Resolves and places the fields of one list, starting at `start`.
pub(super) fn place_fields(
    fields: &[FieldConfig],
    list_path: &str,
    start: usize,
    start_text: &str,
    order: ByteOrder,
    names: &mut Names,
) -> Result<PlacedList, ConfigFieldError> {
    let mut cursor = start;
    let mut previous = start_text.to_owned();
    let mut word: Option<Word> = None;
    let mut out = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let path = format!("{list_path}[{i}]");
        let mut spec = field::resolve(f, &path, order)?;
        names.claim(&f.name, &format!("{path}.name"), &path)?;
        let mut shared = false;
        let at = match f.offset {
            None => cursor,
            Some(o) if o >= cursor => o,
            Some(o) => match (spec.mask, word.as_mut()) {
                (Some(mask), Some(w)) if o == w.offset && spec.size == w.size => {
                    if mask & w.bits != 0 {
                        return Err(error(
                            format!("{path}.mask"),
                            format!(
                                "{mask:#x} overlaps the bits of `{}` and the bit fields after it \
                                 at byte {o} (mask {:#x})",
                                w.name, w.bits
                            ),
                        ));
                    }
                    w.bits |= mask;
                    shared = true;
                    o
                }
                _ => {
                    return Err(error(
                        format!("{path}.offset"),
                        format!(
                            "byte {o} is before the end of {previous} (byte {cursor}): fields are \
                             listed in payload order and do not overlap (only bit fields of the \
                             same type at the same offset, with disjoint masks, share bytes)"
                        ),
                    ));
                }
            },
        };
        let end = at.checked_add(spec.size).filter(|e| *e <= MAX_PAYLOAD);
        let Some(end) = end else {
            let key = if f.offset.is_some() {
                "offset"
            } else {
                "length"
            };
            return Err(error(
                format!("{path}.{key}"),
                format!("the field would end past the largest UDP payload ({MAX_PAYLOAD} bytes)"),
            ));
        };
        if !shared {
            word = spec.mask.map(|bits| Word {
                offset: at,
                size: spec.size,
                bits,
                name: f.name.clone(),
            });
        }
        cursor = cursor.max(end);
        previous = format!("`{}`", f.name);
        spec.place(at);
        out.push(Placed {
            name: f.name.clone(),
            path,
            ty: f.ty.clone(),
            offset: at,
            spec,
            skip: f.skip,
        });
    }
    Ok(PlacedList {
        fields: out,
        end: cursor,
    })
}

/// Names in use along one path through the layout (header, one variant, its group):
/// (name, where it is defined).
#[derive(Clone, Debug, Default)]
pub(super) struct Names(pub(super) Vec<(String, String)>);

impl Names {
    pub(super) fn claim(
        &mut self,
        name: &str,
        key: &str,
        origin: &str,
    ) -> Result<(), ConfigFieldError> {
        if let Some((_, other)) = self.0.iter().find(|(n, _)| n == name) {
            return Err(error(
                key,
                format!("`{name}` is already the name of {other}"),
            ));
        }
        self.0.push((name.to_owned(), origin.to_owned()));
        Ok(())
    }
}
