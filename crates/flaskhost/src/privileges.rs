//! Running as an unprivileged user (`uid`, `gid`): the main process binds its addresses as
//! root, then switches; the Python processes switch as their first act, before Python starts
//! and the app is imported (they are started before anything is bound, so they cannot wait for
//! the main process to switch).
//!
//! The switch is the usual one, in the only order that works: supplementary groups
//! (`setgroups`), then the group (`setgid`), then the user (`setuid`, which gives up the right
//! to change the others). It is then checked: every thread of the process has the new ids,
//! and `setuid(0)` fails. glibc applies set*id calls to every thread of the process, so the
//! main process may switch with the runtime's threads running.

use std::ffi::CString;

use flaskhost_config::{Account, ConfigError, Origin, RunAs};
use nix::unistd::{Gid, Group, Uid, User};

/// The ids to switch to, resolved from `uid`/`gid` before anything starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `None`: keep the current user (only `gid` was given).
    pub uid: Option<u32>,
    pub gid: u32,
    /// Supplementary groups: the user's (from the group database), else none.
    pub groups: Vec<u32>,
    /// For messages: `nobody:nogroup (65534:65534)`.
    pub label: String,
    /// Which option to name in an error about the switch itself, and its origin.
    key: (&'static str, Origin),
}

impl Credentials {
    /// The hidden `worker` command's flags that make a Python process switch to these ids.
    pub fn worker_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(uid) = self.uid {
            args.extend(["--uid".to_string(), uid.to_string()]);
        }
        args.extend(["--gid".to_string(), self.gid.to_string()]);
        if !self.groups.is_empty() {
            let list: Vec<String> = self.groups.iter().map(u32::to_string).collect();
            args.extend(["--groups".to_string(), list.join(",")]);
        }
        args
    }

    /// The ids as the hidden `worker` command received them.
    pub fn from_worker_args(uid: Option<u32>, gid: Option<u32>, groups: Vec<u32>) -> Option<Self> {
        let gid = gid?;
        Some(Credentials {
            uid,
            gid,
            groups,
            label: format!("{}:{gid}", uid.map_or("-".into(), |u| u.to_string())),
            key: ("uid", Origin::Unknown),
        })
    }

    /// True when this process already runs with these user and group ids (real and
    /// effective), so there is nothing to switch: a worker started after the main process
    /// switched, or a server started as the configured user.
    fn current(&self) -> bool {
        let uid_ok = self
            .uid
            .is_none_or(|u| Uid::current().as_raw() == u && Uid::effective().as_raw() == u);
        uid_ok && Gid::current().as_raw() == self.gid && Gid::effective().as_raw() == self.gid
    }

    /// Checks, before anything starts, that the switch will be possible: it needs root,
    /// unless there is nothing to switch.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the option, for the binary to print and exit 64.
    pub fn check(&self) -> Result<(), ConfigError> {
        if Uid::effective().is_root() || self.current() {
            return Ok(());
        }
        Err(ConfigError::InvalidValue {
            key: self.key.0.into(),
            origin: self.key.1.clone(),
            reason: format!(
                "switching to {} needs root; flaskhost runs as uid {}, gid {}",
                self.label,
                Uid::effective(),
                Gid::effective()
            ),
        })
    }

    /// Switches this process to the ids and checks that it cannot get root back. Does
    /// nothing when the process already runs with them.
    ///
    /// # Errors
    /// A message saying which step failed; the process must not go on.
    pub fn switch(&self) -> Result<(), String> {
        if !Uid::effective().is_root() {
            return if self.current() {
                Ok(())
            } else {
                Err(format!(
                    "cannot switch to {}: this process is not root (uid {})",
                    self.label,
                    Uid::effective()
                ))
            };
        }
        let groups: Vec<Gid> = self.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
        nix::unistd::setgid(Gid::from_raw(self.gid))
            .map_err(|e| format!("setgid({}): {e}", self.gid))?;
        if let Some(uid) = self.uid {
            nix::unistd::setuid(Uid::from_raw(uid)).map_err(|e| format!("setuid({uid}): {e}"))?;
        }
        self.verify()
    }

    /// After the switch: every thread has exactly the new ids (real, effective, saved and
    /// filesystem), and root cannot be regained.
    fn verify(&self) -> Result<(), String> {
        let tasks = std::fs::read_dir("/proc/self/task")
            .map_err(|e| format!("cannot check the switch: /proc/self/task: {e}"))?;
        for task in tasks.flatten() {
            // A thread that ended since the listing has no status any more; that is fine.
            let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            for (field, want) in [("Uid:", self.uid), ("Gid:", Some(self.gid))] {
                let Some(want) = want else { continue };
                let ids = status_ids(&status, field);
                if ids.len() != 4 || ids.iter().any(|&id| id != want) {
                    return Err(format!(
                        "thread {} still has {field} {ids:?} after switching to {}",
                        task.file_name().to_string_lossy(),
                        self.label
                    ));
                }
            }
        }
        if self.uid.is_some_and(|u| u != 0) && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(format!(
                "switched to {} but setuid(0) still succeeds",
                self.label
            ));
        }
        Ok(())
    }
}

/// The ids on a `Uid:`/`Gid:` line of `/proc/PID/status`: real, effective, saved, filesystem.
fn status_ids(status: &str, field: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Resolves `uid`/`gid` against the system's user and group databases. `None` when neither is
/// set. Numeric ids need no database entry, but a numeric `uid` without one needs `gid` (its
/// group cannot be known otherwise).
///
/// # Errors
/// A [`ConfigError`] naming the option whose user or group does not exist.
pub fn resolve(run_as: &RunAs) -> Result<Option<Credentials>, ConfigError> {
    let invalid = |key: &str, origin: &Origin, reason: String| ConfigError::InvalidValue {
        key: key.into(),
        origin: origin.clone(),
        reason,
    };
    let user = match &run_as.user {
        None => None,
        Some((account, origin)) => {
            let entry = match account {
                Account::Name(name) => User::from_name(name),
                Account::Id(id) => User::from_uid(Uid::from_raw(*id)),
            }
            .map_err(|e| invalid("uid", origin, format!("cannot look up {account}: {e}")))?;
            match (account, entry) {
                (_, Some(user)) => Some((user.uid.as_raw(), Some(user), origin)),
                (Account::Id(id), None) => Some((*id, None, origin)),
                (Account::Name(name), None) => {
                    return Err(invalid(
                        "uid",
                        origin,
                        format!("there is no user named {name:?}"),
                    ));
                }
            }
        }
    };
    let group = match &run_as.group {
        None => None,
        Some((account, origin)) => {
            let gid = match account {
                Account::Id(id) => *id,
                Account::Name(name) => Group::from_name(name)
                    .map_err(|e| invalid("gid", origin, format!("cannot look up {name}: {e}")))?
                    .ok_or_else(|| {
                        invalid("gid", origin, format!("there is no group named {name:?}"))
                    })?
                    .gid
                    .as_raw(),
            };
            Some((gid, origin))
        }
    };
    // An error about the switch itself names `uid` if given, else `gid`.
    let key = match (&user, &group) {
        (Some((_, _, origin)), _) => ("uid", (*origin).clone()),
        (None, Some((_, origin))) => ("gid", (*origin).clone()),
        (None, None) => return Ok(None),
    };
    let gid = match (&user, &group) {
        (_, Some((gid, _))) => *gid,
        (Some((_, Some(entry), _)), None) => entry.gid.as_raw(),
        (Some((uid, None, origin)), None) => {
            return Err(invalid(
                "uid",
                origin,
                format!(
                    "uid {uid} has no entry in the user database, so its group is unknown; \
                     set `gid` too"
                ),
            ));
        }
        (None, None) => return Ok(None),
    };
    // The user's supplementary groups, as initgroups(3) would set them; none without a user
    // name to look them up by.
    let groups = match user.as_ref().and_then(|(_, entry, _)| entry.as_ref()) {
        Some(entry) => {
            let name = CString::new(entry.name.as_bytes())
                .map_err(|_| invalid("uid", &key.1, "the user name contains NUL".into()))?;
            let mut list: Vec<u32> = nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
                .map_err(|e| {
                    invalid(
                        "uid",
                        &key.1,
                        format!("cannot list {}'s groups: {e}", entry.name),
                    )
                })?
                .into_iter()
                .map(Gid::as_raw)
                .collect();
            list.sort_unstable();
            list.dedup();
            list
        }
        None => Vec::new(),
    };
    let user_name = user.as_ref().map(|(uid, entry, _)| match entry {
        Some(e) => e.name.clone(),
        None => uid.to_string(),
    });
    let group_name = Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name);
    let uid = user.as_ref().map(|(uid, _, _)| *uid);
    let label = match (user_name, uid) {
        (Some(name), Some(uid)) => format!("{name}:{group_name} ({uid}:{gid})"),
        _ => format!("group {group_name} ({gid})"),
    };
    Ok(Some(Credentials {
        uid,
        gid,
        groups,
        label,
        key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_as(user: Option<Account>, group: Option<Account>) -> RunAs {
        RunAs {
            user: user.map(|a| (a, Origin::Cli("--uid".into()))),
            group: group.map(|a| (a, Origin::Cli("--gid".into()))),
        }
    }

    #[test]
    fn root_resolves_with_its_group() {
        let c = resolve(&run_as(Some(Account::Name("root".into())), None))
            .expect("root exists")
            .expect("something to switch to");
        assert_eq!((c.uid, c.gid), (Some(0), 0));
        assert!(c.groups.contains(&0), "{:?}", c.groups);
        assert!(c.label.starts_with("root:"), "{}", c.label);
        assert_eq!(c.worker_args()[..4], ["--uid", "0", "--gid", "0"]);
    }

    #[test]
    fn nothing_to_resolve() {
        assert_eq!(resolve(&RunAs::default()).expect("ok"), None);
    }

    #[test]
    fn unknown_names_name_the_option() {
        let e = resolve(&run_as(Some(Account::Name("no-such-user-fh".into())), None))
            .expect_err("no such user");
        assert_eq!(
            e.to_string(),
            "invalid value for `uid` from command-line flag --uid: there is no user named \
             \"no-such-user-fh\""
        );
        let e = resolve(&run_as(
            None,
            Some(Account::Name("no-such-group-fh".into())),
        ))
        .expect_err("no such group");
        assert_eq!(
            e.to_string(),
            "invalid value for `gid` from command-line flag --gid: there is no group named \
             \"no-such-group-fh\""
        );
    }

    #[test]
    fn numeric_ids_need_no_entry_but_a_bare_uid_needs_a_gid() {
        let e = resolve(&run_as(Some(Account::Id(4_000_000_001)), None)).expect_err("no group");
        assert!(e.to_string().contains("set `gid` too"), "{e}");
        let c = resolve(&run_as(
            Some(Account::Id(4_000_000_001)),
            Some(Account::Id(4_000_000_002)),
        ))
        .expect("numeric ids")
        .expect("something to switch to");
        assert_eq!(
            (c.uid, c.gid, c.groups.len()),
            (Some(4_000_000_001), 4_000_000_002, 0)
        );
    }

    #[test]
    fn the_current_ids_need_no_root() {
        let c = Credentials::from_worker_args(
            Some(Uid::current().as_raw()),
            Some(Gid::current().as_raw()),
            Vec::new(),
        )
        .expect("credentials");
        assert!(c.current());
        assert_eq!(c.check().map_err(|e| e.to_string()), Ok(()));
    }

    #[test]
    fn status_lines() {
        let status = "Name:\tx\nUid:\t65534\t65534\t65534\t65534\nGid:\t1\t2\t3\t4\n";
        assert_eq!(status_ids(status, "Uid:"), [65534; 4]);
        assert_eq!(status_ids(status, "Gid:"), [1, 2, 3, 4]);
        assert!(status_ids(status, "Groups:").is_empty());
    }
}
