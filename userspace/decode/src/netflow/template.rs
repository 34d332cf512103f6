//! NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) templates: parsing (options) template sets
//! into decoding plans, once per template definition rather than once per record.
//!
//! A plan maps each field of a template to what it fills in a flow ([`Element`]): a
//! column, an input of a time computation, an enterprise-specific value kept as hex, or
//! nothing. Lengths are checked here, so a record decoder only has to bound-check bytes.

use std::sync::Arc;

use super::record::{AddrSlot, Slot};
use super::wire::{BAD_TEMPLATE, u16_at, u32_at};
use crate::{DecodeError, Detail, FieldName, detail};

/// Field length announcing an IPFIX variable-length field (RFC 7011 §7).
pub const VARIABLE_LENGTH: u16 = 0xffff;

/// Which export protocol a set belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// NetFlow v9: no enterprise numbers, no variable-length fields, no withdrawal.
    V9,
    /// IPFIX.
    Ipfix,
}

/// Whether a template describes flows or options (exporter metadata).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TemplateKind {
    /// Flow records: one row each.
    Data,
    /// Options records: not flows; only systemInitTimeMilliseconds and sampling are kept.
    Options,
}

/// What a field of a record fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Element {
    /// An unsigned number.
    Num(Slot),
    /// An address (4 or 16 bytes, per the element).
    Addr(AddrSlot),
    /// An enterprise-specific element, kept as `enterprise:id=hex` in `extra`.
    Enterprise {
        /// Private enterprise number.
        enterprise: u32,
        /// Element id (without the enterprise bit).
        id: u16,
    },
    /// Read and ignored (unknown elements, option scopes, padding).
    Skip,
}

/// One field of a template: its length on the wire and what it fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldPlan {
    /// Fixed length (meaningless when `variable`).
    pub len: u16,
    /// IPFIX variable-length field: the length precedes each value.
    pub variable: bool,
    /// The element's id (without the enterprise bit), for error messages.
    pub id: u16,
    /// What the value fills.
    pub element: Element,
    /// Accepted value lengths (inclusive), checked per record for variable-length fields.
    pub min_len: u16,
    /// See `min_len`.
    pub max_len: u16,
}

/// A parsed template.
#[derive(Debug, PartialEq, Eq)]
pub struct Template {
    /// Template id (≥ 256).
    pub id: u16,
    /// Data or options.
    pub kind: TemplateKind,
    /// Fields in record order.
    pub fields: Box<[FieldPlan]>,
    /// Bytes of the shortest possible record (variable-length fields count 1); a set's
    /// remainder shorter than this is padding.
    pub min_record_len: usize,
    /// The template record as sent: a resend of the same bytes only refreshes the
    /// template, other bytes redefine it.
    pub definition: Box<[u8]>,
}

/// What a template set asks of the exporter's template cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateChange {
    /// (Re)define a template.
    Define(Arc<Template>),
    /// IPFIX withdrawal of one template id.
    Withdraw(u16),
    /// IPFIX withdrawal of every template of a kind.
    WithdrawAll(TemplateKind),
}

/// The element an IANA (non-enterprise) id fills in a data record, with the value
/// lengths it accepts. v9 field types below 128 are the same numbers.
fn iana_element(id: u16) -> (Element, u16, u16) {
    use Element::{Addr, Num, Skip};
    let num = |slot| (Num(slot), 1, 8);
    match id {
        1 => num(Slot::Bytes),
        2 => num(Slot::Packets),
        4 => num(Slot::Protocol),
        5 => num(Slot::Tos),
        6 => num(Slot::TcpFlags),
        7 => num(Slot::SrcPort),
        8 => (Addr(AddrSlot::Src), 4, 4),
        9 | 29 => num(Slot::SrcMask),
        10 => num(Slot::InputIf),
        11 => num(Slot::DstPort),
        12 => (Addr(AddrSlot::Dst), 4, 4),
        13 | 30 => num(Slot::DstMask),
        14 => num(Slot::OutputIf),
        15 => (Addr(AddrSlot::NextHop), 4, 4),
        16 => num(Slot::SrcAs),
        17 => num(Slot::DstAs),
        21 => (Num(Slot::EndUptime), 1, 4),
        22 => (Num(Slot::StartUptime), 1, 4),
        27 => (Addr(AddrSlot::Src), 16, 16),
        28 => (Addr(AddrSlot::Dst), 16, 16),
        34 | 50 | 305 => num(Slot::Sampling),
        38 => num(Slot::EngineType),
        39 => num(Slot::EngineId),
        62 => (Addr(AddrSlot::NextHop), 16, 16),
        85 => num(Slot::BytesTotal),
        86 => num(Slot::PacketsTotal),
        150 => num(Slot::StartSecs),
        151 => num(Slot::EndSecs),
        152 => num(Slot::StartMillis),
        153 => num(Slot::EndMillis),
        154 => (Num(Slot::StartMicros), 8, 8),
        155 => (Num(Slot::EndMicros), 8, 8),
        156 => (Num(Slot::StartNanos), 8, 8),
        157 => (Num(Slot::EndNanos), 8, 8),
        158 => num(Slot::StartDelta),
        159 => num(Slot::EndDelta),
        160 => num(Slot::SystemInit),
        161 => num(Slot::DurationMillis),
        162 => num(Slot::DurationMicros),
        _ => (Skip, 0, u16::MAX),
    }
}

/// Where a field sits in a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldRole {
    Data,
    OptionScope,
    OptionValue,
}

fn bad_template(offset: usize, detail: Detail) -> DecodeError {
    DecodeError::new(BAD_TEMPLATE, FieldName::Static("template"), offset, detail)
}

/// The plan of one field specifier.
fn plan_field(
    dialect: Dialect,
    role: FieldRole,
    enterprise: Option<u32>,
    id: u16,
    len: u16,
    offset: usize,
) -> Result<FieldPlan, DecodeError> {
    if len == 0 {
        return Err(bad_template(offset, detail!("element {} has length 0", id)));
    }
    let (element, min_len, max_len) = match (role, enterprise) {
        (FieldRole::OptionScope, _) => (Element::Skip, 0, u16::MAX),
        (FieldRole::Data, Some(enterprise)) => {
            (Element::Enterprise { enterprise, id }, 0, u16::MAX)
        }
        (FieldRole::OptionValue, Some(_)) => (Element::Skip, 0, u16::MAX),
        (FieldRole::Data, None) => iana_element(id),
        (FieldRole::OptionValue, None) => match iana_element(id) {
            found @ (Element::Num(Slot::SystemInit | Slot::Sampling), _, _) => found,
            _ => (Element::Skip, 0, u16::MAX),
        },
    };
    let variable = dialect == Dialect::Ipfix && len == VARIABLE_LENGTH;
    // Fixed-size encodings (NTP timestamps) have no variable-length form.
    if variable && matches!(element, Element::Num(_)) && min_len == max_len {
        return Err(bad_template(
            offset,
            detail!("element {} cannot be variable-length", id),
        ));
    }
    if !variable && !(min_len..=max_len).contains(&len) {
        return Err(bad_template(
            offset,
            detail!(
                "element {} has length {}, accepted {} to {}",
                id,
                len,
                min_len,
                max_len
            ),
        ));
    }
    Ok(FieldPlan {
        len,
        variable,
        id,
        element,
        min_len,
        max_len,
    })
}

/// Parses the field specifiers of one template record starting at `offset`; returns the
/// plans and the offset after them.
fn parse_fields(
    packet: &[u8],
    mut offset: usize,
    dialect: Dialect,
    count: u16,
    scope_count: u16,
    kind: TemplateKind,
) -> Result<(Vec<FieldPlan>, usize), DecodeError> {
    // Bounded by what the packet can hold, whatever `count` claims.
    let mut fields = Vec::with_capacity(usize::from(count).min(packet.len() / 4));
    for i in 0..count {
        let start = offset;
        let raw_id = u16_at(packet, offset, "template field id")?;
        let len = u16_at(packet, offset + 2, "template field length")?;
        offset += 4;
        let (id, enterprise) = if dialect == Dialect::Ipfix && raw_id & 0x8000 != 0 {
            let enterprise = u32_at(packet, offset, "template enterprise number")?;
            offset += 4;
            (raw_id & 0x7fff, Some(enterprise))
        } else {
            (raw_id, None)
        };
        let role = match kind {
            TemplateKind::Data => FieldRole::Data,
            TemplateKind::Options if i < scope_count => FieldRole::OptionScope,
            TemplateKind::Options => FieldRole::OptionValue,
        };
        fields.push(plan_field(dialect, role, enterprise, id, len, start)?);
    }
    Ok((fields, offset))
}

/// Builds the template from its fields, checking that a record can exist in a set.
fn build(
    packet: &[u8],
    record_start: usize,
    record_end: usize,
    id: u16,
    kind: TemplateKind,
    fields: Vec<FieldPlan>,
) -> Result<Arc<Template>, DecodeError> {
    if id < 256 {
        return Err(bad_template(
            record_start,
            detail!("template id {} is below 256", id),
        ));
    }
    let min_record_len: usize = fields
        .iter()
        .map(|f| if f.variable { 1 } else { usize::from(f.len) })
        .sum();
    // A set is at most 65535 bytes with its 4-byte header.
    if min_record_len == 0 || min_record_len > 65_531 {
        return Err(bad_template(
            record_start,
            detail!("template {} has records of {} bytes", id, min_record_len),
        ));
    }
    let definition = packet
        .get(record_start..record_end)
        .unwrap_or_default()
        .into();
    Ok(Arc::new(Template {
        id,
        kind,
        fields: fields.into_boxed_slice(),
        min_record_len,
        definition,
    }))
}

/// Parses a template set (v9 set 0, IPFIX set 2) whose records lie in `start..end`.
///
/// # Errors
/// `bad_template` for an unusable record, `truncated` when a record runs past `end`.
pub fn parse_template_set(
    packet: &[u8],
    start: usize,
    end: usize,
    dialect: Dialect,
    out: &mut Vec<TemplateChange>,
) -> Result<(), DecodeError> {
    let set = packet.get(..end).unwrap_or(packet);
    let mut offset = start;
    // Fewer than 4 bytes left is padding (RFC 3954 §5.3, RFC 7011 §3.3.1).
    while end.saturating_sub(offset) >= 4 {
        let record_start = offset;
        let id = u16_at(set, offset, "template id")?;
        let count = u16_at(set, offset + 2, "template field count")?;
        if count == 0 {
            match dialect {
                Dialect::V9 => {
                    return Err(bad_template(
                        record_start,
                        detail!("template {} has no fields", id),
                    ));
                }
                Dialect::Ipfix if id == 2 => {
                    out.push(TemplateChange::WithdrawAll(TemplateKind::Data))
                }
                Dialect::Ipfix => out.push(TemplateChange::Withdraw(id)),
            }
            offset += 4;
            continue;
        }
        let (fields, next) = parse_fields(set, offset + 4, dialect, count, 0, TemplateKind::Data)?;
        out.push(TemplateChange::Define(build(
            set,
            record_start,
            next,
            id,
            TemplateKind::Data,
            fields,
        )?));
        offset = next;
    }
    Ok(())
}

/// Parses an options template set (v9 set 1, IPFIX set 3) whose records lie in `start..end`.
///
/// # Errors
/// As [`parse_template_set`].
pub fn parse_options_template_set(
    packet: &[u8],
    start: usize,
    end: usize,
    dialect: Dialect,
    out: &mut Vec<TemplateChange>,
) -> Result<(), DecodeError> {
    let set = packet.get(..end).unwrap_or(packet);
    let mut offset = start;
    match dialect {
        Dialect::V9 => {
            // Header (6) and one field (4); a v9 options template is padded to 32 bits.
            while end.saturating_sub(offset) >= 10 {
                let record_start = offset;
                let id = u16_at(set, offset, "options template id")?;
                let scope_len = u16_at(set, offset + 2, "option scope length")?;
                let option_len = u16_at(set, offset + 4, "option length")?;
                if scope_len % 4 != 0 || option_len % 4 != 0 || (scope_len == 0 && option_len == 0)
                {
                    return Err(bad_template(
                        record_start,
                        detail!(
                            "options template {}: scope length {} and option length {} must be non-zero multiples of 4",
                            id,
                            scope_len,
                            option_len
                        ),
                    ));
                }
                let (scope_count, count) = (scope_len / 4, scope_len / 4 + option_len / 4);
                let (fields, next) = parse_fields(
                    set,
                    offset + 6,
                    dialect,
                    count,
                    scope_count,
                    TemplateKind::Options,
                )?;
                out.push(TemplateChange::Define(build(
                    set,
                    record_start,
                    next,
                    id,
                    TemplateKind::Options,
                    fields,
                )?));
                offset = next;
            }
        }
        Dialect::Ipfix => {
            while end.saturating_sub(offset) >= 4 {
                let record_start = offset;
                let id = u16_at(set, offset, "options template id")?;
                let count = u16_at(set, offset + 2, "options template field count")?;
                if count == 0 {
                    out.push(if id == 3 {
                        TemplateChange::WithdrawAll(TemplateKind::Options)
                    } else {
                        TemplateChange::Withdraw(id)
                    });
                    offset += 4;
                    continue;
                }
                let scope_count = u16_at(set, offset + 4, "options template scope field count")?;
                if scope_count == 0 || scope_count > count {
                    return Err(bad_template(
                        record_start,
                        detail!(
                            "options template {}: scope field count {} of {} fields",
                            id,
                            scope_count,
                            count
                        ),
                    ));
                }
                let (fields, next) = parse_fields(
                    set,
                    offset + 6,
                    dialect,
                    count,
                    scope_count,
                    TemplateKind::Options,
                )?;
                out.push(TemplateChange::Define(build(
                    set,
                    record_start,
                    next,
                    id,
                    TemplateKind::Options,
                    fields,
                )?));
                offset = next;
            }
        }
    }
    Ok(())
}
