//! Layout config → [`Plan`], once at start. Everything that can be wrong with a layout is
//! found here and reported as a [`ConfigFieldError`] naming the key (`fields[2].offset`,
//! `variants[1].group.count`), so that the decoder itself only meets bad payloads.

use super::intern::intern;
use super::{
    config::{ByteOrder, EmptyGroup, GroupConfig, LayoutConfig, TrailingBytes, UnknownVariant},
    field,
    place::{Names, Placed, PlacedList, place_fields},
    plan::{Body, CountRead, Dispatch, Extent, FieldOp, Group, OpKind, Plan, Segment, Variants},
};
use crate::{Column, ColumnType, ConfigFieldError, RecordSchema};

/// No field may end past the largest possible UDP payload.
pub(super) const MAX_PAYLOAD: usize = 65_535;

/// The decoder name in every schema this module builds.
pub(super) const DECODER_NAME: &str = "schema";

/// A config error at `key`.
pub(super) fn error(key: impl Into<String>, reason: impl Into<String>) -> ConfigFieldError {
    ConfigFieldError::new(key, reason)
}

/// Checks `config` and builds its plan.
pub(crate) fn compile(config: &LayoutConfig) -> Result<Plan, ConfigFieldError> {
    if config.file.is_some() {
        if let Some(key) = config.key_besides_file() {
            return Err(error(
                key,
                "not allowed with `file`: the whole layout comes from the file",
            ));
        }
        return Err(error(
            "file",
            "the layout file has not been loaded (LayoutConfig::resolve_file)",
        ));
    }
    let order = config.byte_order.unwrap_or_default();
    let mut columns = Columns::default();
    let mut names = Names::default();
    let header = place_fields(&config.fields, "fields", 0, "the start", order, &mut names)?;
    let header_segment = columns.segment(&header)?;

    let dispatch = if config.variants.is_empty() {
        if config.discriminator.is_some() {
            return Err(error("discriminator", "only with `variants`"));
        }
        if config.unknown_variant.is_some() {
            return Err(error("unknown_variant", "only with `variants`"));
        }
        let group = match &config.group {
            None => None,
            Some(g) => {
                let preceding: Vec<&Placed> = header.fields.iter().collect();
                let (group, offset) = compile_group(
                    g,
                    "group",
                    &preceding,
                    "in the header",
                    order,
                    &mut names,
                    &mut columns,
                )?;
                Some(with_start(group, offset, header.end, "group", "")?)
            }
        };
        Dispatch::Single(Box::new(Body {
            fixed: Segment::new(Vec::new(), Vec::new(), header.end),
            group,
        }))
    } else {
        Dispatch::Variants(compile_variants(
            config,
            &header,
            order,
            &names,
            &mut columns,
        )?)
    };

    let mut plan = Plan {
        schema: RecordSchema {
            decoder: DECODER_NAME.to_owned(),
            columns: Vec::new(),
        },
        header: header_segment,
        dispatch,
        reject_trailing: config.trailing_bytes == Some(TrailingBytes::Reject),
        owning_cols: Box::default(),
    };
    plan.owning_cols = plan.owning_columns();
    if columns.cols.is_empty() {
        return Err(error(
            "fields",
            "the layout yields no column: give at least one field that is not skipped",
        ));
    }
    set_nullability(&plan, &mut columns);
    plan.schema.columns = columns.cols;
    Ok(plan)
}

/// The discriminator, every variant's fields (first, so that their columns precede any
/// group's) and the groups (top-level, or each variant's).
fn compile_variants(
    config: &LayoutConfig,
    header: &PlacedList,
    order: ByteOrder,
    names: &Names,
    columns: &mut Columns,
) -> Result<Variants, ConfigFieldError> {
    let Some(disc_name) = &config.discriminator else {
        return Err(error(
            "variants",
            "need `discriminator`: the header field that picks the variant",
        ));
    };
    let disc = header
        .fields
        .iter()
        .find(|p| p.name == *disc_name)
        .ok_or_else(|| {
            error(
                "discriminator",
                format!("no header field {disc_name:?} (the discriminator must be in `fields`)"),
            )
        })?;
    let disc_read = match &disc.spec.kind {
        OpKind::Timestamp(..) => None,
        kind => kind.int().copied(),
    };
    let Some(disc_read) = disc_read else {
        return Err(error(
            "discriminator",
            format!(
                "`{disc_name}` is a {} field; the discriminator must be an integer",
                if matches!(disc.spec.kind, OpKind::Timestamp(..)) {
                    "timestamp"
                } else {
                    disc.ty.as_str()
                }
            ),
        ));
    };
    let (lo, hi) = field::int_range(&disc_read);

    // Pass 1: every variant's fields, so that their columns come before any group's.
    let mut cases: Vec<(i128, usize)> = Vec::new();
    let mut bodies: Vec<(PlacedList, Segment, Names)> = Vec::with_capacity(config.variants.len());
    for (j, v) in config.variants.iter().enumerate() {
        let path = format!("variants[{j}]");
        if v.values.is_empty() {
            return Err(error(
                format!("{path}.values"),
                "at least one discriminator value",
            ));
        }
        for (k, value) in v.values.iter().enumerate() {
            let value = i128::from(*value);
            let key = format!("{path}.values[{k}]");
            if value < lo || value > hi {
                return Err(error(
                    key,
                    format!("{value} is out of range of `{disc_name}` ({lo}..={hi})"),
                ));
            }
            if let Some((_, other)) = cases.iter().find(|(v, _)| *v == value) {
                return Err(error(
                    key,
                    format!("{value} already selects variants[{other}]"),
                ));
            }
            cases.push((value, j));
        }
        let mut scope = names.clone();
        let fields_path = format!("{path}.fields");
        let placed = place_fields(
            &v.fields,
            &fields_path,
            header.end,
            "the header",
            order,
            &mut scope,
        )?;
        let segment = columns.segment(&placed)?;
        bodies.push((placed, segment, scope));
    }
    cases.sort_by_key(|(v, _)| *v);

    // Pass 2: the groups.
    let top = match &config.group {
        Some(g) => {
            if let Some(j) = config.variants.iter().position(|v| v.group.is_some()) {
                return Err(error(
                    format!("variants[{j}].group"),
                    "the layout has a top-level `group`; a layout has one group",
                ));
            }
            let preceding: Vec<&Placed> = header.fields.iter().collect();
            let mut scope = names.clone();
            for (placed, _, _) in &bodies {
                for p in &placed.fields {
                    // Names of variant fields are columns too: the group's must differ.
                    scope.0.push((p.name.clone(), p.path.clone()));
                }
            }
            Some(compile_group(
                g,
                "group",
                &preceding,
                "in the header",
                order,
                &mut scope,
                columns,
            )?)
        }
        None => None,
    };
    let mut out = Vec::with_capacity(bodies.len());
    for (j, (placed, segment, mut scope)) in bodies.into_iter().enumerate() {
        let group = match (&top, &config.variants.get(j).and_then(|v| v.group.as_ref())) {
            (Some((group, offset)), _) => Some(with_start(
                group.clone(),
                *offset,
                placed.end,
                "group",
                &format!(", in variants[{j}]"),
            )?),
            (None, Some(g)) => {
                let path = format!("variants[{j}].group");
                let preceding: Vec<&Placed> =
                    header.fields.iter().chain(placed.fields.iter()).collect();
                let (group, offset) = compile_group(
                    g,
                    &path,
                    &preceding,
                    "in the header or this variant",
                    order,
                    &mut scope,
                    columns,
                )?;
                Some(with_start(group, offset, placed.end, &path, "")?)
            }
            (None, None) => None,
        };
        out.push(Body {
            fixed: segment,
            group,
        });
    }
    Ok(Variants {
        discriminator: disc_read,
        discriminator_name: intern(disc_name),
        cases,
        bodies: out,
        header_only: config.unknown_variant == Some(UnknownVariant::HeaderOnly),
    })
}

/// The field a group's `count` names, which must be an earlier plain unsigned integer.
fn count_field(
    g: &GroupConfig,
    name: &str,
    path: &str,
    preceding: &[&Placed],
    scope_text: &str,
) -> Result<CountRead, ConfigFieldError> {
    let key = format!("{path}.count");
    let Some(p) = preceding.iter().find(|p| p.name == name) else {
        let reason = if g.fields.iter().any(|f| f.name == name) {
            format!("`{name}` is a field of the element: the count must come before the group")
        } else {
            format!("no field {name:?} before the group ({scope_text})")
        };
        return Err(error(key, reason));
    };
    let why = match &p.spec.kind {
        OpKind::Uint(read) | OpKind::Bool(read) => {
            return Ok(CountRead {
                read: *read,
                name: intern(name),
            });
        }
        OpKind::Int(_) => format!("`{name}` is signed ({})", p.ty),
        OpKind::Enum(..) => format!("`{name}` has enum names"),
        OpKind::Timestamp(..) => format!("`{name}` is a timestamp"),
        _ => format!("`{name}` is a {} field", p.ty),
    };
    Err(error(
        key,
        format!("{why}; the count must be an unsigned integer"),
    ))
}

/// Resolves where a group starts for a body ending at `end`.
fn with_start(
    mut group: Group,
    offset: Option<usize>,
    end: usize,
    path: &str,
    context: &str,
) -> Result<Group, ConfigFieldError> {
    group.start = match offset {
        None => end,
        Some(o) if o < end => {
            return Err(error(
                format!("{path}.offset"),
                format!(
                    "byte {o} is before the end of the fields before the group (byte {end}{context})"
                ),
            ));
        }
        Some(o) if o > MAX_PAYLOAD => {
            return Err(error(
                format!("{path}.offset"),
                format!("byte {o} is past the largest UDP payload ({MAX_PAYLOAD} bytes)"),
            ));
        }
        Some(o) => o,
    };
    Ok(group)
}

/// Checks a group; its start is resolved per body by [`with_start`].
fn compile_group(
    g: &GroupConfig,
    path: &str,
    preceding: &[&Placed],
    scope_text: &str,
    order: ByteOrder,
    names: &mut Names,
    columns: &mut Columns,
) -> Result<(Group, Option<usize>), ConfigFieldError> {
    let count = match &g.count {
        None => None,
        Some(name) => Some(count_field(g, name, path, preceding, scope_text)?),
    };
    if g.max_count == Some(0) {
        return Err(error(
            format!("{path}.max_count"),
            "0 would refuse every element: omit it for no limit",
        ));
    }
    let index_col = match &g.index {
        None => None,
        Some(index) => {
            let key = format!("{path}.index");
            if !field::valid_name(index) {
                return Err(error(
                    key,
                    format!(
                        "{index:?} is not a column name: use 1-64 lowercase letters, digits and '_', not starting with a digit"
                    ),
                ));
            }
            names.claim(index, &key, &key)?;
            Some(columns.add(index, ColumnType::UInt64, false, &key)?)
        }
    };
    let fields_path = format!("{path}.fields");
    if g.fields.is_empty() {
        return Err(error(fields_path, "an element needs at least one field"));
    }
    let placed = place_fields(
        &g.fields,
        &fields_path,
        0,
        "the element's start",
        order,
        names,
    )?;
    if index_col.is_none() && placed.fields.iter().all(|p| p.skip) {
        return Err(error(
            fields_path,
            "every field is skipped: an element needs a column (a field, or `index`)",
        ));
    }
    let element = columns.segment(&placed)?;
    let size = match g.size {
        None => placed.end,
        Some(s) if s < placed.end => {
            return Err(error(
                format!("{path}.size"),
                format!(
                    "{s} is less than the end of the element's fields (byte {})",
                    placed.end
                ),
            ));
        }
        Some(s) if s > MAX_PAYLOAD => {
            return Err(error(
                format!("{path}.size"),
                format!("{s} is larger than the largest UDP payload ({MAX_PAYLOAD} bytes)"),
            ));
        }
        Some(s) => s,
    };
    let infallible = !element.ops.iter().any(|op| op.kind.can_fail());
    let group = Group {
        start: 0,
        count,
        size,
        max_count: g.max_count,
        element,
        index_col,
        empty_row: g.when_empty == Some(EmptyGroup::OneRow),
        infallible,
    };
    Ok((group, g.offset))
}

/// The output columns, merged by name across variants.
#[derive(Debug, Default)]
struct Columns {
    cols: Vec<Column>,
    /// Where each column was first defined, for messages.
    origin: Vec<String>,
    /// Columns some field may leave null whatever the variant.
    maybe_null: Vec<bool>,
}

impl Columns {
    fn add(
        &mut self,
        name: &str,
        ty: ColumnType,
        nullable: bool,
        key: &str,
    ) -> Result<usize, ConfigFieldError> {
        if let Some(i) = self.cols.iter().position(|c| c.name == name) {
            let (Some(col), Some(origin), Some(null)) = (
                self.cols.get(i),
                self.origin.get(i),
                self.maybe_null.get_mut(i),
            ) else {
                return Err(error(key, "internal: column list out of step"));
            };
            if col.ty != ty {
                return Err(error(
                    key,
                    format!(
                        "column `{name}` is {:?} in {origin} but {ty:?} here; a name shared by \
                         variants needs one column type",
                        col.ty
                    ),
                ));
            }
            *null |= nullable;
            return Ok(i);
        }
        self.cols.push(Column::required(name, ty));
        self.origin.push(key.to_owned());
        self.maybe_null.push(nullable);
        Ok(self.cols.len() - 1)
    }

    /// Registers the columns of a placed list and builds its segment.
    fn segment(&mut self, list: &PlacedList) -> Result<Segment, ConfigFieldError> {
        let mut ops = Vec::new();
        for p in list.fields.iter().filter(|p| !p.skip) {
            let col = self.add(
                &p.name,
                p.spec.column,
                p.spec.nullable,
                &format!("{}.type", p.path),
            )?;
            ops.push(FieldOp {
                name: intern(&p.name),
                offset: p.offset,
                col,
                kind: p.spec.kind.clone(),
            });
        }
        let extents = list
            .fields
            .iter()
            .map(|p| Extent {
                name: intern(&p.name),
                offset: p.offset,
                end: p.offset + p.spec.size,
            })
            .collect();
        Ok(Segment::new(ops, extents, list.end))
    }
}

/// A column is required when every kind of row writes it: every variant (and the header-only
/// row of an unknown variant), and every group element (unless an empty group makes a row).
fn set_nullability(plan: &Plan, columns: &mut Columns) {
    let n = columns.cols.len();
    let mut always = vec![0usize; n];
    let mut shapes = 0usize;
    let mut count = |written: &[&Segment], extra: Option<usize>| {
        let mut w = vec![false; n];
        for seg in written {
            for op in &seg.ops {
                if let Some(slot) = w.get_mut(op.col) {
                    *slot = true;
                }
            }
        }
        if let Some(slot) = extra.and_then(|c| w.get_mut(c)) {
            *slot = true;
        }
        for (a, written) in always.iter_mut().zip(w) {
            *a += usize::from(written);
        }
        shapes += 1;
    };
    let bodies: &[Body] = match &plan.dispatch {
        Dispatch::Single(body) => std::slice::from_ref(&**body),
        Dispatch::Variants(v) => &v.bodies,
    };
    for body in bodies {
        match &body.group {
            Some(g) if !g.empty_row => {
                count(&[&plan.header, &body.fixed, &g.element], g.index_col);
            }
            _ => count(&[&plan.header, &body.fixed], None),
        }
    }
    if let Dispatch::Variants(v) = &plan.dispatch
        && v.header_only
    {
        count(&[&plan.header], None);
    }
    for ((col, a), maybe_null) in columns.cols.iter_mut().zip(always).zip(&columns.maybe_null) {
        col.nullable = a < shapes || *maybe_null;
    }
}
