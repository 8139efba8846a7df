//! Files breakglass writes (audit logs, the audit key, tabletop reports):
//! readable by their owner only, never created through a symbolic link, and
//! never in a folder another user owns, where that user could swap or read
//! them.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;

#[cfg(unix)]
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Makes sure `dir` is a folder of ours: created 0700 (with any missing
/// parents) when absent; refused when it is a symbolic link, not a folder,
/// or owned by someone else.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(format!(
            "{} is a symbolic link: refusing to write through it",
            dir.display()
        )),
        Ok(m) if !m.is_dir() => Err(format!("{} is not a folder", dir.display())),
        Ok(m) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                if m.uid() != euid() {
                    return Err(format!(
                        "{} belongs to another user (uid {}): refusing to write there",
                        dir.display(),
                        m.uid()
                    ));
                }
            }
            let _ = m;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))
        }
        Err(e) => Err(format!("cannot inspect {}: {e}", dir.display())),
    }
}

/// A new file, 0600, never through a symbolic link, never over an
/// existing one.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.append(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    o.open(path)
}

/// Writes a whole new private file (a report).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = create_private(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Reads a file that must be private: refused when it is a symbolic link,
/// belongs to someone else, or can be read or written by others.
pub fn read_private(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut o = OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_NOFOLLOW);
    let mut f = o.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let m = f.metadata()?;
        if m.uid() != euid() || m.mode() & 0o077 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} must belong to this user and be readable by it alone (chmod 600)",
                    path.display()
                ),
            ));
        }
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_open_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        std::fs::write(&target, "x").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(
            create_private(&link).is_err(),
            "no writing through a symlink"
        );
        assert!(read_private(&link).is_err(), "no reading through a symlink");
        let linked_dir = dir.path().join("dirlink");
        std::os::unix::fs::symlink(dir.path(), &linked_dir).expect("symlink");
        assert!(private_dir(&linked_dir).is_err());
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .expect("chmod");
        assert!(read_private(&target).is_err(), "readable by others");
    }
}
