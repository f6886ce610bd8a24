//! The daemon's command queue, kept in `state.json`: a command is persisted before its
//! `accepted` reply, runs in arrival order once its time has come, and leaves the queue only
//! when it finished, so a crash re-runs it. Finished ids are remembered (the last few hundred)
//! so a command sent twice runs once. The queue is bounded (DESIGN 7): at most
//! [`MAX_QUEUED`] commands and [`MAX_QUEUED_BYTES`] of IDFs, each IDF stored once.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::control::{Command, DeliveryArgs, Rejection, Request, UpdateArgs};
use crate::store::commands::{MAX_QUEUED, MAX_QUEUED_BYTES};
use crate::store::{
    IdfRef, MAX_FINISHED, Queued, QueuedCommand, QueuedUpdate, State, Store, StoreError, documents,
};

/// Why a command was not queued.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("queue full: {0}")]
    Full(String),
    #[error("{0} is not a command that waits in the queue")]
    NotQueued(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Adds an accepted request, unless its id is known. `Ok(false)`: already known (idempotent).
pub fn push(
    store: &Store,
    request: &Request,
    not_before: Option<DateTime<Utc>>,
) -> Result<bool, PushError> {
    if knows(&store.snapshot(), &request.id) {
        return Ok(false);
    }
    let (idf, update) = match &request.command {
        Command::Assign(a) => (Some(&a.idf), None),
        Command::Delivery(DeliveryArgs { idf }) => (idf.as_ref(), None),
        Command::Update(u) => (u.idf.as_ref(), Some(u)),
        Command::Settings(_) => return Err(PushError::NotQueued("settings")),
        Command::Status => return Err(PushError::NotQueued("status")),
        Command::Cancel(_) => return Err(PushError::NotQueued("cancel")),
    };
    let state_dir = store.state_dir().to_path_buf();
    store.update_with_document(idf, |s, stored| {
        if knows(s, &request.id) {
            return Ok(false);
        }
        room_for(s, &state_dir, stored.as_ref())?;
        let command = match (&request.command, update) {
            (_, Some(u)) => Queued::Update(queued_update(u, stored)),
            (Command::Assign(_), _) => Queued::Assign {
                idf: stored.ok_or(PushError::NotQueued("assign without an IDF"))?,
            },
            _ => Queued::Delivery { idf: stored },
        };
        s.commands.push(QueuedCommand {
            id: request.id.clone(),
            command,
            not_before,
            deferrals: 0,
        });
        Ok(true)
    })?
}

fn queued_update(u: &UpdateArgs, idf: Option<IdfRef>) -> QueuedUpdate {
    QueuedUpdate {
        idf,
        idf_url: u.idf_url.clone(),
        inform_user: u.inform_user.as_ref().map(|i| i.timeout_s),
        user_can_cancel: u.user_can_cancel,
        clean: u.clean,
        force: u.force,
    }
}

/// Whether one more command (with the IDF document `adding`) fits.
fn room_for(
    state: &State,
    state_dir: &std::path::Path,
    adding: Option<&IdfRef>,
) -> Result<(), PushError> {
    if state.commands.len() >= MAX_QUEUED {
        return Err(PushError::Full(format!(
            "{MAX_QUEUED} commands are waiting (the bound); cancel one or let them run first"
        )));
    }
    let documents: BTreeSet<&IdfRef> = state
        .commands
        .iter()
        .filter_map(|c| c.command.idf())
        .chain(adding)
        .collect();
    let bytes: u64 = documents
        .iter()
        .map(|r| documents::size(state_dir, r))
        .sum();
    if bytes > MAX_QUEUED_BYTES {
        return Err(PushError::Full(format!(
            "the waiting commands' IDFs would take {} (the bound is {})",
            crate::report::human_bytes(bytes),
            crate::report::human_bytes(MAX_QUEUED_BYTES)
        )));
    }
    Ok(())
}

/// Whether `id` still waits in the queue (or runs).
pub fn knows_waiting(state: &State, id: &str) -> bool {
    state.commands.iter().any(|c| c.id == id)
}

pub fn knows(state: &State, id: &str) -> bool {
    state.commands.iter().any(|c| c.id == id) || state.finished_commands.iter().any(|c| c == id)
}

/// The first command whose time has come, or the time the next one is due.
pub fn next(state: &State, now: DateTime<Utc>) -> Result<QueuedCommand, Option<DateTime<Utc>>> {
    if let Some(due) = state
        .commands
        .iter()
        .find(|c| c.not_before.is_none_or(|t| t <= now))
    {
        return Ok(due.clone());
    }
    Err(state.commands.iter().filter_map(|c| c.not_before).min())
}

/// The command ran to its end (successfully or not): it leaves the queue.
pub fn finish(store: &Store, id: &str) -> Result<(), StoreError> {
    store.update(|s| {
        s.commands.retain(|c| c.id != id);
        s.finished_commands.push_back(id.to_string());
        while s.finished_commands.len() > MAX_FINISHED {
            s.finished_commands.pop_front();
        }
    })
}

/// The user postponed it: run it again at `when`.
pub fn defer(store: &Store, id: &str, when: DateTime<Utc>) -> Result<(), StoreError> {
    store.update(|s| {
        if let Some(c) = s.commands.iter_mut().find(|c| c.id == id) {
            c.not_before = Some(when);
            c.deferrals = c.deferrals.saturating_add(1);
        }
    })
}

/// Removes a waiting command (the running one is stopped by the daemon, not here).
pub fn cancel(store: &Store, target: &str, id: &str) -> Result<(), Rejection> {
    let reject = |error: String| Rejection {
        id: Some(id.to_string()),
        error,
    };
    let removed = store
        .update(|s| {
            let before = s.commands.len();
            s.commands.retain(|c| c.id != target);
            before != s.commands.len()
        })
        .map_err(|e| reject(e.to_string()))?;
    if removed {
        Ok(())
    } else {
        Err(reject(format!(
            "no scheduled command has the id {target:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::PathSettings;
    use crate::idf::{Idf, WantedApp};

    fn store(dir: &std::path::Path) -> Store {
        Store::open(&PathSettings {
            state_dir: dir.to_path_buf(),
            apps_dir: dir.join("apps"),
            control_socket: dir.join("control.sock"),
        })
        .unwrap()
    }

    fn assign(id: &str, apps: usize, salt: &str) -> Request {
        let idf = Idf {
            apps: (0..apps)
                .map(|i| WantedApp {
                    name: format!("app-{salt}-{i}"),
                    version: "1.0".into(),
                    app_json_sha256: None,
                })
                .collect(),
        };
        let raw = serde_json::json!({"id": id, "command": "assign", "idf": idf});
        crate::control::parse(raw.to_string().as_bytes(), Utc::now()).unwrap()
    }

    #[test]
    fn the_same_idf_is_stored_once_however_many_commands_carry_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        for i in 0..40 {
            assert!(push(&store, &assign(&format!("c{i}"), 50, "same"), None).unwrap());
        }
        let documents = std::fs::read_dir(dir.path().join("idf")).unwrap().count();
        assert_eq!(documents, 1);
        let journal = std::fs::metadata(dir.path().join("state.json"))
            .unwrap()
            .len();
        assert!(journal < 16 * 1024, "state.json is {journal} bytes");
    }

    #[test]
    fn the_queue_is_bounded_by_count_and_the_same_id_runs_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        for i in 0..MAX_QUEUED {
            assert!(push(&store, &assign(&format!("c{i}"), 1, "x"), None).unwrap());
        }
        assert!(!push(&store, &assign("c0", 1, "x"), None).unwrap());
        let err = push(&store, &assign("one-more", 1, "y"), None).unwrap_err();
        assert!(err.to_string().starts_with("queue full"), "{err}");
        // The document written for the refused command is not kept.
        assert_eq!(
            std::fs::read_dir(dir.path().join("idf")).unwrap().count(),
            1
        );
    }

    #[test]
    fn finishing_a_command_removes_its_idf_when_nothing_else_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        push(&store, &assign("a", 1, "a"), None).unwrap();
        push(&store, &assign("b", 1, "b"), None).unwrap();
        let count = || std::fs::read_dir(dir.path().join("idf")).unwrap().count();
        assert_eq!(count(), 2);
        finish(&store, "a").unwrap();
        assert_eq!(count(), 1);
        assert!(knows(&store.snapshot(), "a"));
        assert!(next(&store.snapshot(), Utc::now()).is_ok_and(|c| c.id == "b"));
    }
}
