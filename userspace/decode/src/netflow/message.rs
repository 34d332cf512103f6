//! NetFlow v9 and IPFIX export packets: the header, the walk over sets, template
//! resolution, and the decoding of data and options records.
//!
//! A packet is decoded in two passes so that it is all rows or none. The first pass checks
//! every set header, parses the (options) template sets and resolves the template of every
//! data set — from the templates earlier in the same packet, else from the exporter's
//! shared cache. Then the packet's templates are applied to the cache. If a data set has no
//! template the packet goes no further (the caller holds it). The second pass decodes the
//! records into scratch records, which the caller emits only once all of them decoded.

use std::fmt::Write as _;
use std::sync::Arc;

use super::cache::{ExporterKey, Shared, TemplateView};
use super::record::{FlowRecord, PacketInfo, Slot};
use super::template::{
    Dialect, Element, Template, TemplateChange, TemplateKind, parse_options_template_set,
    parse_template_set,
};
use super::wire::{BAD_LENGTH, BAD_VALUE, ip, take, u8_at, u16_at, u32_at, uint};
use crate::{DecodeError, FieldName, PacketContext, detail};

/// Why a packet is decoded: on arrival, or again after being held (its templates were
/// applied to the cache then; applying them again could undo a newer definition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// First decode of a received packet.
    Fresh,
    /// A held packet, retried by `release`.
    Release,
}

/// What became of a packet that had no error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Every data set decoded: `records` flows are in the scratch records.
    Decoded {
        /// What the header and options say about the flows.
        info: PacketInfo,
        /// Number of scratch records filled.
        records: usize,
    },
    /// A data set's template is unknown; nothing was decoded.
    Missing(Missing),
}

/// The first data set of a packet whose template is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missing {
    /// The packet's exporter.
    pub key: ExporterKey,
    /// The exporter's template generation before the lookups.
    pub generation: u64,
    /// The set's id (the template id).
    pub template_id: u16,
    /// Offset of the set's header.
    pub offset: usize,
}

#[derive(Clone, Copy, Debug)]
enum SetKind {
    Templates,
    Data,
    /// Reserved set ids: skipped (RFC 7011 §3.3.2).
    Reserved,
}

#[derive(Clone, Copy, Debug)]
struct SetRef {
    kind: SetKind,
    id: u16,
    /// Offset of the set header.
    offset: usize,
    /// Offset after the set.
    end: usize,
    /// Number of template changes parsed before this set (for in-packet resolution).
    changes_before: usize,
}

/// The header fields of a v9 or IPFIX packet.
#[derive(Clone, Copy, Debug)]
struct Header {
    dialect: Dialect,
    info: PacketInfo,
    domain: u32,
    body: usize,
    end: usize,
}

fn parse_header(payload: &[u8], version: u16) -> Result<Header, DecodeError> {
    if version == 9 {
        take(payload, 0, 20, "header")?;
        let uptime = u32_at(payload, 4, "sys_uptime")?;
        let secs = u32_at(payload, 8, "unix_secs")?;
        let source_id = u32_at(payload, 16, "source_id")?;
        return Ok(Header {
            dialect: Dialect::V9,
            info: PacketInfo {
                version,
                exported_at: i64::from(secs) * 1_000_000,
                domain: Some(source_id),
                uptime_ms: Some(uptime),
                system_init_ms: None,
                sampling: None,
            },
            domain: source_id,
            body: 20,
            end: payload.len(),
        });
    }
    take(payload, 0, 16, "header")?;
    let length = usize::from(u16_at(payload, 2, "length")?);
    let export_time = u32_at(payload, 4, "export_time")?;
    let domain = u32_at(payload, 12, "observation_domain_id")?;
    if length < 16 || length > payload.len() {
        let kind = if length < 16 {
            BAD_LENGTH
        } else {
            super::wire::TRUNCATED
        };
        return Err(DecodeError::new(
            kind,
            FieldName::Static("length"),
            2,
            detail!("message length {}, payload {} bytes", length, payload.len()),
        ));
    }
    if length < payload.len() {
        return Err(DecodeError::new(
            BAD_LENGTH,
            FieldName::Static("length"),
            2,
            detail!("message length {}, payload {} bytes", length, payload.len()),
        ));
    }
    Ok(Header {
        dialect: Dialect::Ipfix,
        info: PacketInfo {
            version,
            exported_at: i64::from(export_time) * 1_000_000,
            domain: Some(domain),
            uptime_ms: None,
            system_init_ms: None,
            sampling: None,
        },
        domain,
        body: 16,
        end: length,
    })
}

/// The template of data set `id` for a set preceded by `overlay` (this packet's earlier
/// template changes), else from the exporter's cache.
fn resolve(
    id: u16,
    overlay: &[TemplateChange],
    cache: Option<&TemplateView<'_>>,
) -> Option<Arc<Template>> {
    let mut withdrawn = [false; 2];
    let index = |kind| match kind {
        TemplateKind::Data => 0,
        TemplateKind::Options => 1,
    };
    for change in overlay.iter().rev() {
        match change {
            TemplateChange::Define(t) if t.id == id => {
                return (!withdrawn[index(t.kind)]).then(|| Arc::clone(t));
            }
            TemplateChange::Withdraw(w) if *w == id => return None,
            TemplateChange::WithdrawAll(kind) => withdrawn[index(*kind)] = true,
            _ => {}
        }
    }
    let t = cache?.get(id)?;
    (!withdrawn[index(t.kind)]).then(|| Arc::clone(t))
}

/// A data or options record error, naming the template and element.
fn in_element(mut e: DecodeError, template: &Template, element: u16) -> DecodeError {
    e.field = FieldName::TemplateElement {
        template: template.id,
        element,
    };
    e
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Decodes one record of `template` at `offset` (within `set`, which ends at its set's
/// end) into `rec`; returns the offset after it.
fn decode_record(
    set: &[u8],
    mut offset: usize,
    template: &Template,
    rec: &mut FlowRecord,
) -> Result<usize, DecodeError> {
    for f in template.fields.iter() {
        let len = if f.variable {
            let short =
                u8_at(set, offset, "variable length").map_err(|e| in_element(e, template, f.id))?;
            offset += 1;
            if short == 255 {
                let long = u16_at(set, offset, "variable length")
                    .map_err(|e| in_element(e, template, f.id))?;
                offset += 2;
                long
            } else {
                u16::from(short)
            }
        } else {
            f.len
        };
        let bytes = take(set, offset, usize::from(len), "value")
            .map_err(|e| in_element(e, template, f.id))?;
        if f.variable && !(f.min_len..=f.max_len).contains(&len) {
            return Err(in_element(
                DecodeError::new(
                    BAD_VALUE,
                    FieldName::None,
                    offset,
                    detail!(
                        "value of {} bytes, accepted {} to {}",
                        len,
                        f.min_len,
                        f.max_len
                    ),
                ),
                template,
                f.id,
            ));
        }
        match f.element {
            Element::Num(slot) => rec.set(slot, uint(bytes)),
            Element::Addr(slot) => {
                if let Some(addr) = ip(bytes) {
                    rec.set_addr(slot, addr);
                }
            }
            Element::Enterprise { enterprise, id } => {
                if !rec.extra.is_empty() {
                    rec.extra.push(',');
                }
                // Writing to a String cannot fail.
                let _ = write!(rec.extra, "{enterprise}:{id}=");
                for b in bytes {
                    rec.extra.push(char::from(HEX[usize::from(b >> 4)]));
                    rec.extra.push(char::from(HEX[usize::from(b & 0xf)]));
                }
            }
            Element::Skip => {}
        }
        offset += usize::from(len);
    }
    Ok(offset)
}

/// One worker's v9/IPFIX decoding state: scratch space reused from packet to packet.
#[derive(Debug, Default)]
pub struct MessageDecoder {
    sets: Vec<SetRef>,
    changes: Vec<TemplateChange>,
    resolved: Vec<Arc<Template>>,
    /// Ids of the templates the last packet made usable.
    usable: Vec<u16>,
    /// Flows of the last decoded packet (the first `records` of a `Decoded` outcome).
    pub records: Vec<FlowRecord>,
    options: FlowRecord,
}

impl MessageDecoder {
    /// Decodes a v9 (`version` 9) or IPFIX (10) packet; see the module docs.
    ///
    /// # Errors
    /// A [`DecodeError`] for anything that does not fit; no template is applied then if
    /// the error is in a set header or a template set.
    pub fn decode(
        &mut self,
        shared: &Shared,
        ctx: &PacketContext,
        payload: &[u8],
        version: u16,
        mode: Mode,
    ) -> Result<MessageOutcome, DecodeError> {
        let header = parse_header(payload, version)?;
        let key = ExporterKey::of(ctx, header.domain);
        self.walk_sets(payload, &header)?;

        let mut exporter = shared.exporter(&key);
        let generation = exporter.as_ref().map_or(0, |e| e.generation());
        let mut missing = None;
        {
            let view = exporter
                .as_ref()
                .map(|e| e.templates(ctx.received_at, shared.timeout_us()));
            self.resolved.clear();
            for set in self.sets.iter().filter(|s| matches!(s.kind, SetKind::Data)) {
                let overlay = self.changes.get(..set.changes_before).unwrap_or_default();
                match resolve(set.id, overlay, view.as_ref()) {
                    Some(t) => self.resolved.push(t),
                    None => {
                        missing = Some((set.id, set.offset));
                        break;
                    }
                }
            }
        }
        if mode == Mode::Fresh
            && !self.changes.is_empty()
            && let Some(applied) =
                shared.apply(&key, &self.changes, ctx.received_at, &mut self.usable)
        {
            exporter = Some(applied);
        }
        if let Some((template_id, offset)) = missing {
            return Ok(MessageOutcome::Missing(Missing {
                key,
                generation,
                template_id,
                offset,
            }));
        }

        let (mut system_init_ms, mut sampling) = exporter
            .as_ref()
            .map_or((None, None), |e| e.options_state());
        let (mut options_records, mut options_changed) = (0u64, false);
        let mut records = 0usize;
        let mut resolved = self.resolved.iter();
        for set in self.sets.iter().filter(|s| matches!(s.kind, SetKind::Data)) {
            let Some(template) = resolved.next() else {
                break;
            };
            let data = payload.get(..set.end).unwrap_or(payload);
            let mut offset = set.offset + 4;
            while set.end - offset >= template.min_record_len {
                match template.kind {
                    TemplateKind::Data => {
                        if records == self.records.len() {
                            self.records.push(FlowRecord::default());
                        }
                        let rec = &mut self.records[records];
                        rec.reset();
                        offset = decode_record(data, offset, template, rec)?;
                        records += 1;
                    }
                    TemplateKind::Options => {
                        self.options.reset();
                        offset = decode_record(data, offset, template, &mut self.options)?;
                        options_records += 1;
                        if let Some(v) = self.options.get(Slot::SystemInit) {
                            system_init_ms = Some(v);
                            options_changed = true;
                        }
                        if let Some(v) = self.options.get(Slot::Sampling) {
                            sampling = Some(v);
                            options_changed = true;
                        }
                    }
                }
            }
        }
        if options_records > 0 {
            shared.count_options_records(options_records);
        }
        if options_changed
            && let Some(e) = exporter.as_ref().cloned().or_else(|| shared.exporter(&key))
        {
            e.set_options_state(system_init_ms, sampling);
        }
        let mut info = header.info;
        if header.dialect == Dialect::Ipfix {
            info.system_init_ms = system_init_ms;
        }
        info.sampling = sampling;
        Ok(MessageOutcome::Decoded { info, records })
    }

    /// Checks every set header and parses the template sets (first pass).
    fn walk_sets(&mut self, payload: &[u8], header: &Header) -> Result<(), DecodeError> {
        self.sets.clear();
        self.changes.clear();
        let (template_set, options_set) = match header.dialect {
            Dialect::V9 => (0, 1),
            Dialect::Ipfix => (2, 3),
        };
        let mut offset = header.body;
        while offset < header.end {
            if header.end - offset < 4 && header.dialect == Dialect::V9 {
                // v9 has no message length: trailing bytes are padding.
                break;
            }
            let id = u16_at(payload, offset, "set id")?;
            let len = usize::from(u16_at(payload, offset + 2, "set length")?);
            if len < 4 {
                return Err(DecodeError::new(
                    BAD_LENGTH,
                    FieldName::Static("set length"),
                    offset + 2,
                    detail!("set {} has length {}", id, len),
                ));
            }
            let end = offset + len;
            if end > header.end {
                return Err(DecodeError::new(
                    super::wire::TRUNCATED,
                    FieldName::Static("set length"),
                    offset + 2,
                    detail!(
                        "set {} of {} bytes, {} left in the packet",
                        id,
                        len,
                        header.end - offset
                    ),
                ));
            }
            let changes_before = self.changes.len();
            let kind = if id == template_set {
                parse_template_set(payload, offset + 4, end, header.dialect, &mut self.changes)?;
                SetKind::Templates
            } else if id == options_set {
                parse_options_template_set(
                    payload,
                    offset + 4,
                    end,
                    header.dialect,
                    &mut self.changes,
                )?;
                SetKind::Templates
            } else if id >= 256 {
                SetKind::Data
            } else {
                SetKind::Reserved
            };
            self.sets.push(SetRef {
                kind,
                id,
                offset,
                end,
                changes_before,
            });
            offset = end;
        }
        Ok(())
    }
}
