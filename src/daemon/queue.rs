//! The daemon's command queue, kept in `state.json`: a command is persisted before its
//! `accepted` reply, runs in arrival order once its time has come, and leaves the queue only
//! when it finished, so a crash re-runs it. Finished ids are remembered (the last few hundred)
//! so a command sent twice runs once.

use chrono::{DateTime, Utc};

use crate::control::{Rejection, Request};
use crate::store::{QueuedCommand, State, Store, StoreError};

const REMEMBERED: usize = 500;

/// Adds an accepted request, unless its id is known. `Ok(false)`: already known (idempotent).
pub fn push(
    store: &Store,
    request: &Request,
    not_before: Option<DateTime<Utc>>,
) -> Result<bool, StoreError> {
    store.update(|s| {
        if knows(s, &request.id) {
            return false;
        }
        s.commands.push(QueuedCommand {
            id: request.id.clone(),
            request: request.raw.clone(),
            not_before,
            deferrals: 0,
        });
        true
    })
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
        while s.finished_commands.len() > REMEMBERED {
            s.finished_commands.pop_front();
        }
    })
}

/// The user postponed it: run it again at `when`.
pub fn defer(store: &Store, id: &str, when: DateTime<Utc>) -> Result<(), StoreError> {
    store.update(|s| {
        if let Some(c) = s.commands.iter_mut().find(|c| c.id == id) {
            c.not_before = Some(when);
            c.deferrals += 1;
        }
    })
}

/// Removes a waiting command; the one running now cannot be cancelled.
pub fn cancel(
    store: &Store,
    target: &str,
    running: Option<&str>,
    id: &str,
) -> Result<(), Rejection> {
    let reject = |error: String| Rejection {
        id: Some(id.to_string()),
        error,
    };
    if running == Some(target) {
        return Err(reject(format!(
            "command {target:?} is running and cannot be cancelled"
        )));
    }
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
