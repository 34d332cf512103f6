//! Pure checks on what a guest reports: effective capabilities from `/proc/PID/status`,
//! Prometheus metric lines from `/metrics`.

/// Capability numbers and names (linux/capability.h) the service may hold.
const CAPABILITIES: [(u32, &str); 41] = [
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (2, "CAP_DAC_READ_SEARCH"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (9, "CAP_LINUX_IMMUTABLE"),
    (10, "CAP_NET_BIND_SERVICE"),
    (11, "CAP_NET_BROADCAST"),
    (12, "CAP_NET_ADMIN"),
    (13, "CAP_NET_RAW"),
    (14, "CAP_IPC_LOCK"),
    (15, "CAP_IPC_OWNER"),
    (16, "CAP_SYS_MODULE"),
    (17, "CAP_SYS_RAWIO"),
    (18, "CAP_SYS_CHROOT"),
    (19, "CAP_SYS_PTRACE"),
    (20, "CAP_SYS_PACCT"),
    (21, "CAP_SYS_ADMIN"),
    (22, "CAP_SYS_BOOT"),
    (23, "CAP_SYS_NICE"),
    (24, "CAP_SYS_RESOURCE"),
    (25, "CAP_SYS_TIME"),
    (26, "CAP_SYS_TTY_CONFIG"),
    (27, "CAP_MKNOD"),
    (28, "CAP_LEASE"),
    (29, "CAP_AUDIT_WRITE"),
    (30, "CAP_AUDIT_CONTROL"),
    (31, "CAP_SETFCAP"),
    (32, "CAP_MAC_OVERRIDE"),
    (33, "CAP_MAC_ADMIN"),
    (34, "CAP_SYSLOG"),
    (35, "CAP_WAKE_ALARM"),
    (36, "CAP_BLOCK_SUSPEND"),
    (37, "CAP_AUDIT_READ"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
    (40, "CAP_CHECKPOINT_RESTORE"),
];

/// The five capabilities the unit grants, sorted by name.
pub const SERVICE_CAPABILITIES: [&str; 5] = [
    "CAP_BPF",
    "CAP_IPC_LOCK",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_PERFMON",
];

/// The names of the capabilities set in a `CapEff:` hex mask, sorted; `None` when the
/// text is not hex. Unknown bits show as `cap_<n>`.
pub fn capability_names(hex_mask: &str) -> Option<Vec<String>> {
    let mask = u64::from_str_radix(hex_mask.trim(), 16).ok()?;
    let mut names: Vec<String> = (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| {
            CAPABILITIES
                .iter()
                .find(|(n, _)| *n == bit)
                .map_or_else(|| format!("cap_{bit}"), |(_, name)| (*name).to_owned())
        })
        .collect();
    names.sort();
    Some(names)
}

/// The value of the sample of `metric` whose labels include every `(name, value)` of
/// `labels`, from Prometheus text exposition.
pub fn metric_value(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, label_text) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if name != metric {
                return None;
            }
            let wanted = labels.iter().all(|(k, v)| {
                label_text
                    .split(',')
                    .any(|pair| pair == format!("{k}=\"{v}\""))
            });
            wanted.then(|| value.parse().ok()).flatten()
        })
}

/// Every sample line of `metric`, for failure messages.
pub fn metric_lines<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_mask_decodes_to_exactly_the_five_capabilities() {
        assert_eq!(
            capability_names("000000c000007000").expect("hex"),
            SERVICE_CAPABILITIES.map(str::to_owned)
        );
        assert_eq!(
            capability_names("0000000000200000").expect("hex"),
            ["CAP_SYS_ADMIN"]
        );
        assert_eq!(capability_names("0").expect("hex"), Vec::<String>::new());
        assert_eq!(capability_names("zz"), None);
    }

    #[test]
    fn metric_values_are_found_by_name_and_labels() {
        let text = "# HELP x y\n\
            sluice_xdp_attach_mode{interface=\"eth0\",mode=\"native\",requested=\"auto\"} 1\n\
            sluice_xdp_attach_mode{interface=\"eth0\",mode=\"generic\",requested=\"auto\"} 0\n\
            sluice_spool_quarantined_files_total 1\n";
        let mode = |m| {
            metric_value(
                text,
                "sluice_xdp_attach_mode",
                &[("interface", "eth0"), ("mode", m)],
            )
        };
        assert_eq!(mode("native"), Some(1.0));
        assert_eq!(mode("generic"), Some(0.0));
        assert_eq!(mode("copy"), None);
        assert_eq!(
            metric_value(text, "sluice_spool_quarantined_files_total", &[]),
            Some(1.0)
        );
        assert_eq!(metric_lines(text, "sluice_xdp_attach_mode").len(), 2);
        assert_eq!(metric_value(text, "sluice_xdp", &[]), None);
    }
}
