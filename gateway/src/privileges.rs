//! Dropping root. Started as root outside systemd (which starts moat as its own user), moat
//! binds its listeners, attaches the guard and opens the audit trail, then becomes
//! `runtime.user`: supplementary groups replaced by the user's primary group, group and user ids
//! set for every thread. Nothing moat does after start needs a capability (listeners are bound,
//! the guard's programs attached and its event ring open, the audit files open), so none is kept.

use std::path::Path;

use nix::unistd::{Gid, Uid, User};

/// Why privileges could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    /// The user does not exist.
    #[error("runtime.user {0}: no such user")]
    NoUser(String),
    /// A system call failed.
    #[error("cannot become {user}: {what}: {source}")]
    Call {
        /// The user.
        user: String,
        /// Which step.
        what: &'static str,
        /// The error.
        #[source]
        source: nix::Error,
    },
}

/// Becomes `user` if running as root; hands `dirs` (the audit trail and its key) to it first so
/// it can go on writing them. Returns whether privileges were dropped.
pub fn drop_to(user: &str, dirs: &[&Path]) -> Result<bool, DropError> {
    if !Uid::effective().is_root() {
        return Ok(false);
    }
    let u = User::from_name(user)
        .ok()
        .flatten()
        .ok_or_else(|| DropError::NoUser(user.to_owned()))?;
    let call = |what: &'static str| {
        move |source: nix::Error| DropError::Call {
            user: user.to_owned(),
            what,
            source,
        }
    };
    for dir in dirs {
        chown_tree(dir, u.uid, u.gid).map_err(call("chown"))?;
    }
    // glibc applies these to every thread of the process.
    nix::unistd::setgroups(&[u.gid]).map_err(call("setgroups"))?;
    nix::unistd::setgid(u.gid).map_err(call("setgid"))?;
    nix::unistd::setuid(u.uid).map_err(call("setuid"))?;
    // Root cannot come back: setuid from root to another user clears the saved set-user-ID too.
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(DropError::Call {
            user: user.to_owned(),
            what: "verify",
            source: nix::Error::EPERM,
        });
    }
    Ok(true)
}

/// Gives `dir` and everything below it to `uid`:`gid`.
fn chown_tree(dir: &Path, uid: Uid, gid: Gid) -> nix::Result<()> {
    nix::unistd::chown(dir, Some(uid), Some(gid))?;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                chown_tree(&p, uid, gid)?;
            } else {
                nix::unistd::chown(&p, Some(uid), Some(gid))?;
            }
        }
    }
    Ok(())
}
