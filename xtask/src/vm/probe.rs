//! The guest side of a VM test: a shell script run once at boot by a systemd unit, talking
//! to the host over the serial console (the qemu process's stdin and stdout).
//!
//! It reports with lines `SLUICE-VM: <key> <value>` and, once the service is up (or has
//! failed), reads commands from the host one a line (`stop`, `poweroff`). First boot:
//! installs the package with apt (offline: the image holds its dependencies), writes the
//! case's config and a drop-in adding `--stats-file`, then `systemctl enable --now
//! sluice`. A later boot (the power cut) only waits for the enabled unit that started by
//! itself. The host parses the lines with [`parse_marker`].

/// The prefix of every line the probe reports.
pub const MARKER: &str = "SLUICE-VM:";

/// Where the run's files go in the guest (the package, config, drop-in).
pub const GUEST_DIR: &str = "/root/sluice-vm";

/// The unit that runs the probe, attached to the serial port (not through the journal,
/// so its lines reach the host whatever journald does, and it can read commands).
pub const UNIT: &str = "\
[Unit]
Description=Sluice VM test probe
After=systemd-networkd.service network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/sluice-vm-probe
StandardInput=tty-force
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no

[Install]
WantedBy=multi-user.target
";

/// Systemd drop-in for the service under test: the same command plus `--stats-file`, so
/// that the host reads the counters the daemon leaves when it stops.
pub const STATS_DROP_IN: &str = "\
[Service]
ExecStart=
ExecStart=/usr/bin/sluice run --config /etc/sluice/sluice.toml --stats-file /var/lib/sluice/stats.json
";

/// The probe script.
pub const SCRIPT: &str = r#"#!/bin/bash
# Sluice VM test probe (cargo xtask vm-test): reports on the serial console.
set -u
say() { printf '\nSLUICE-VM: %s\n' "$*"; }
stty -echo -onlcr 2>/dev/null
dir=/root/sluice-vm
say "booted $(uname -r)"
if [ ! -e /var/lib/sluice-vm-installed ]; then
    # The image holds every dependency: nothing is downloaded (the guest has no route out).
    apt-get install -y "$dir/sluice.deb" >"$dir/apt.log" 2>&1
    rc=$?
    [ $rc -eq 0 ] || tail -n 20 "$dir/apt.log" | sed 's/^/SLUICE-VM: apt /'
    say "installed rc=$rc"
    install -m 0644 "$dir/sluice.toml" /etc/sluice/sluice.toml
    mkdir -p /etc/systemd/system/sluice.service.d
    install -m 0644 "$dir/stats.conf" /etc/systemd/system/sluice.service.d/vm-test.conf
    systemctl daemon-reload
    touch /var/lib/sluice-vm-installed
    sync
    timeout 180 systemctl enable --now sluice
    rc=$?
    # Do not let Restart= try again behind the host's back: one attempt, one journal.
    [ $rc -eq 0 ] || systemctl stop sluice
else
    # The enabled unit starts by itself after a reboot (or a power cut).
    timeout 180 sh -c 'until systemctl is-active -q sluice || systemctl is-failed -q sluice; do sleep 1; done'
    systemctl is-active -q sluice
    rc=$?
fi
say "started rc=$rc"
journalctl -b -u sluice -o cat --no-pager | tail -n 40 | sed 's/^/SLUICE-VM: journal /'
if [ $rc -eq 0 ]; then
    pid=$(systemctl show -p MainPID --value sluice)
    say "capeff $(awk '/^CapEff:/ {print $2}' /proc/$pid/status)"
    say "user $(stat -c %U /proc/$pid)"
fi
say "ready"
while read -r command; do
    case "$command" in
    stop)
        timeout 120 systemctl stop sluice
        say "stopped rc=$? result=$(systemctl show -p Result --value sluice)"
        say "stats $(tr -d '\n' < /var/lib/sluice/stats.json 2>/dev/null)"
        ;;
    journal)
        journalctl -b -u sluice -o cat --no-pager | tail -n 60 | sed 's/^/SLUICE-VM: journal /'
        say "journal-end"
        ;;
    poweroff)
        sync
        say "poweroff"
        systemctl poweroff
        exit 0
        ;;
    esac
done
"#;

/// `(key, value)` of a probe line, wherever the marker sits in it (kernel or systemd
/// output may share the line), with the value trimmed of the console's `\r`.
pub fn parse_marker(line: &str) -> Option<(&str, &str)> {
    let (_, rest) = line.split_once(MARKER)?;
    let rest = rest.trim();
    Some(rest.split_once(' ').unwrap_or((rest, "")))
}

/// `key=value` fields of a marker value (`rc=0 result=success`).
pub fn field<'a>(value: &'a str, key: &str) -> Option<&'a str> {
    value
        .split_whitespace()
        .find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_anywhere_in_a_line_and_split_into_key_and_value() {
        assert_eq!(parse_marker("SLUICE-VM: ready\r"), Some(("ready", "")));
        assert_eq!(
            parse_marker("[  OK  ] StartedSLUICE-VM: started rc=0\r"),
            Some(("started", "rc=0"))
        );
        assert_eq!(
            parse_marker("SLUICE-VM: journal error: Linux 5.10 is not supported"),
            Some(("journal", "error: Linux 5.10 is not supported"))
        );
        assert_eq!(
            parse_marker("[    1.0] virtio_net virtio0 eth0: renamed"),
            None
        );
    }

    #[test]
    fn fields_are_read_by_key() {
        assert_eq!(field("rc=0 result=success", "rc"), Some("0"));
        assert_eq!(field("rc=0 result=success", "result"), Some("success"));
        assert_eq!(field("rc=0", "r"), None);
    }

    #[test]
    fn the_drop_in_keeps_the_packaged_command_and_adds_the_stats_file() {
        assert!(STATS_DROP_IN.contains("--stats-file /var/lib/sluice/stats.json"));
        assert!(SCRIPT.contains(&format!("dir={GUEST_DIR}\n")));
    }
}
