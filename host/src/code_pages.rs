//! The executable's code pages, handed back to the kernel once a worker has started and
//! after each hot reload (which runs the component compiler again).
//!
//! Most of an idle worker's resident memory is the binary's own code and read-only data:
//! what loading the config and the components, connecting to AWS and Pulsar and preparing
//! the lease table ran once, each page with the 64 KiB the kernel maps around it on its
//! first touch. Those pages are clean copies of the file, so `madvise(MADV_PAGEOUT)` can
//! reclaim them without changing anything the process sees: a page needed again is read
//! back on its next access, and what stays resident is the code the running worker uses.
//! A page another process also maps (a second worker of the same binary) is left alone
//! by the kernel.
//!
//! Only mappings of the executable that are not writable and hold no private copy of a
//! page (smaps' `Anonymous: 0 kB`) are advised: the relocated read-only data is such a
//! private copy, and it is never touched.

use std::io;

/// The executable's resident code and read-only data, before and after [`release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Bytes of the advised mappings resident before.
    pub before: u64,
    /// Bytes of the same mappings resident right after.
    pub after: u64,
}

/// One mapping of `/proc/self/smaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    writable: bool,
    path: String,
    rss_kib: u64,
    anonymous_kib: u64,
}

/// Asks the kernel to reclaim the executable's clean code and read-only pages.
#[cfg(target_os = "linux")]
pub fn release() -> io::Result<Released> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy();
    let ours = |m: &Mapping| !m.writable && m.anonymous_kib == 0 && m.path == exe;
    let before = parse(&std::fs::read_to_string("/proc/self/smaps")?);
    let targets: Vec<&Mapping> = before.iter().filter(|m| ours(m)).collect();
    if targets.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no read-only mapping of {exe} in /proc/self/smaps"),
        ));
    }
    for m in &targets {
        advise_page_out(m.start, m.end - m.start)?;
    }
    let after = parse(&std::fs::read_to_string("/proc/self/smaps")?);
    let resident = |maps: &[&Mapping]| maps.iter().map(|m| m.rss_kib * 1024).sum::<u64>();
    let same: Vec<&Mapping> = after
        .iter()
        .filter(|a| targets.iter().any(|t| t.start == a.start && t.end == a.end))
        .collect();
    Ok(Released {
        before: resident(&targets),
        after: resident(&same),
    })
}

/// [`release`], logged at debug level: `after` says what ran the code handed back.
pub fn release_after(after: &str) {
    match release() {
        Ok(r) => tracing::debug!(
            before_kib = r.before / 1024,
            after_kib = r.after / 1024,
            "code pages of {after} handed back to the kernel"
        ),
        Err(e) => tracing::debug!(error = %e, "code pages of {after} kept"),
    }
}

/// Not on Linux: nothing to release.
#[cfg(not(target_os = "linux"))]
pub fn release() -> io::Result<Released> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "only Linux can page out a process's code",
    ))
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn advise_page_out(start: usize, len: usize) -> io::Result<()> {
    // SAFETY: `start..start + len` is a whole mapping of this process as the kernel listed
    // it, and MADV_PAGEOUT changes no content: it only lets the kernel reclaim pages it can
    // read back. A range unmapped in between is an error (ENOMEM), not undefined behaviour.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_PAGEOUT) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The mappings of an smaps text, with the fields [`release`] needs.
fn parse(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-') {
            let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) else {
                continue;
            };
            let perms = fields.next().unwrap_or("");
            // offset, device, inode, then the path (which may hold spaces).
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            out.push(Mapping {
                start,
                end,
                writable: perms.contains('w'),
                path,
                rss_kib: 0,
                anonymous_kib: 0,
            });
            continue;
        }
        let Some(m) = out.last_mut() else { continue };
        let kib = || fields.clone().next().and_then(|v| v.parse::<u64>().ok());
        match first {
            "Rss:" => m.rss_kib = kib().unwrap_or(0),
            "Anonymous:" => m.anonymous_kib = kib().unwrap_or(0),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0400000 r--p 00000000 fd:01 1234 /opt/shardline/bin/shardline
Size:               4096 kB
Rss:                3072 kB
Anonymous:             0 kB
VmFlags: rd mr mw me dw sd
55d0c0400000-55d0c2000000 r-xp 00400000 fd:01 1234 /opt/shardline/bin/shardline
Size:              28672 kB
Rss:               16896 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me dw sd
55d0c2000000-55d0c2100000 r--p 02000000 fd:01 1234 /opt/shardline/bin/shardline
Size:               1024 kB
Rss:                1024 kB
Anonymous:          1024 kB
55d0c2100000-55d0c2110000 rw-p 02100000 fd:01 1234 /opt/shardline/bin/shardline
Rss:                  64 kB
Anonymous:            64 kB
7f0000000000-7f0000001000 r--p 00000000 fd:01 99 /tmp/a dir/with spaces.so
Rss:                   4 kB
Anonymous:             0 kB
";

    #[test]
    fn smaps_mappings_are_read_with_their_permissions_and_sizes() {
        let maps = parse(SMAPS);
        assert_eq!(maps.len(), 5);
        assert_eq!(
            maps[1],
            Mapping {
                start: 0x55d0c0400000,
                end: 0x55d0c2000000,
                writable: false,
                path: "/opt/shardline/bin/shardline".into(),
                rss_kib: 16896,
                anonymous_kib: 0,
            }
        );
        // Relocated read-only data: a private copy, so never advised.
        assert_eq!(maps[2].anonymous_kib, 1024);
        assert!(maps[3].writable);
        assert_eq!(maps[4].path, "/tmp/a dir/with spaces.so");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_leaves_less_of_the_executable_resident_and_the_code_still_runs() {
        let released = release().expect("MADV_PAGEOUT on the test binary");
        assert!(released.before > 0, "{released:?}");
        assert!(
            released.after < released.before,
            "nothing was reclaimed: {released:?}"
        );
        // Code paged out runs again (read back on its next access).
        assert_eq!(parse(SMAPS).len(), 5);
    }
}
