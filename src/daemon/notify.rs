//! What the daemon tells systemd over `$NOTIFY_SOCKET` while it runs: `STATUS=` with the
//! update status the moment the store's status changes (not polled: `systemctl status` shows
//! a text as soon as it is reached), and `WATCHDOG=1` pings at half the watchdog interval (at
//! most every second). `READY=1`, `RELOADING=1` and `STOPPING=1` are sent where they happen,
//! in `mod.rs`.
//!
//! Changes faster than one per [`STATUS_GAP`] are merged: PID 1 gets at most a few messages a
//! second, and never a text older than that gap.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::shutdown::Shutdown;

/// The shortest time between two `STATUS=` messages.
pub(super) const STATUS_GAP: Duration = Duration::from_millis(200);

/// One message to systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Notice {
    Status(String),
    Watchdog,
}

/// Sends the notices to systemd until `shutdown`; `watchdog` is `$WATCHDOG_USEC` if set.
pub(super) async fn follow(
    status: watch::Receiver<Option<String>>,
    watchdog: Option<Duration>,
    shutdown: Shutdown,
) {
    follow_with(status, watchdog, shutdown, |notice| {
        let _ = match &notice {
            Notice::Status(text) => sd_notify::notify(&[sd_notify::NotifyState::Status(text)]),
            Notice::Watchdog => sd_notify::notify(&[sd_notify::NotifyState::Watchdog]),
        };
    })
    .await;
}

/// [`follow`] with the sending left to `send` (tests record it).
async fn follow_with(
    mut status: watch::Receiver<Option<String>>,
    watchdog: Option<Duration>,
    mut shutdown: Shutdown,
    mut send: impl FnMut(Notice),
) {
    // Without a watchdog the tick only bounds how long a missed wake-up could last.
    let tick = watchdog.map_or(Duration::from_secs(60), |w| {
        (w / 2).clamp(Duration::from_millis(1), Duration::from_secs(1))
    });
    let mut ping = tokio::time::interval(tick);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last: Option<(String, Instant)> = None;
    loop {
        let text = status
            .borrow_and_update()
            .clone()
            .unwrap_or_else(|| "idle".into());
        if last.as_ref().is_none_or(|(sent, _)| *sent != text) {
            let due = last.as_ref().map(|(_, at)| *at + STATUS_GAP);
            match due {
                Some(due) if Instant::now() < due => {
                    // Too soon after the last one: wait out the gap (pinging meanwhile), then
                    // send whatever is latest by then.
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        _ = ping.tick(), if watchdog.is_some() => send(Notice::Watchdog),
                        () = shutdown.recv() => return,
                    }
                    continue;
                }
                _ => {
                    send(Notice::Status(text.clone()));
                    last = Some((text, Instant::now()));
                }
            }
        }
        tokio::select! {
            _ = ping.tick() => {
                if watchdog.is_some() {
                    send(Notice::Watchdog);
                }
            }
            changed = status.changed() => {
                if changed.is_err() {
                    // The store is gone only when the daemon is.
                    return;
                }
            }
            () = shutdown.recv() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    type Sent = Arc<Mutex<Vec<(Duration, Notice)>>>;

    /// Runs the follower on paused time; returns the sender of the status, what was sent
    /// (with the virtual time since the start) and the trigger that stops it.
    fn start(
        watchdog: Option<Duration>,
    ) -> (
        watch::Sender<Option<String>>,
        Sent,
        crate::shutdown::Trigger,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = watch::channel(None);
        let sent: Sent = Arc::default();
        let (trigger, shutdown) = crate::shutdown::channel();
        let start = Instant::now();
        let record = sent.clone();
        let task = tokio::spawn(follow_with(rx, watchdog, shutdown, move |notice| {
            record.lock().unwrap().push((start.elapsed(), notice));
        }));
        (tx, sent, trigger, task)
    }

    fn statuses(sent: &Sent) -> Vec<(Duration, String)> {
        sent.lock()
            .unwrap()
            .iter()
            .filter_map(|(at, n)| match n {
                Notice::Status(text) => Some((*at, text.clone())),
                Notice::Watchdog => None,
            })
            .collect()
    }

    fn status(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_is_sent_the_moment_it_happens() {
        let (tx, sent, trigger, task) = start(None);
        tokio::time::sleep(Duration::from_secs(5)).await;
        tx.send_replace(status(
            "Update in progress (Transfer started – 2026-11-30 17:00:00)",
        ));
        tokio::time::sleep(Duration::from_millis(1)).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        tx.send_replace(status("Update successful"));
        tokio::time::sleep(Duration::from_millis(1)).await;
        trigger.fire();
        task.await.unwrap();
        let got = statuses(&sent);
        assert_eq!(
            got,
            vec![
                (Duration::ZERO, "idle".to_string()),
                (
                    Duration::from_secs(5),
                    "Update in progress (Transfer started – 2026-11-30 17:00:00)".to_string()
                ),
                (
                    Duration::from_millis(10_001),
                    "Update successful".to_string()
                ),
            ],
            "each text is sent at the instant it is reached (paused time: no lag at all)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn changes_faster_than_the_gap_are_merged_and_the_latest_is_sent_at_its_end() {
        let (tx, sent, trigger, task) = start(None);
        tokio::time::sleep(Duration::from_secs(1)).await;
        for phase in ["A", "B", "C"] {
            tx.send_replace(status(phase));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        trigger.fire();
        task.await.unwrap();
        let got = statuses(&sent);
        assert_eq!(
            got,
            vec![
                (Duration::ZERO, "idle".to_string()),
                (Duration::from_secs(1), "A".to_string()),
                (Duration::from_secs(1) + STATUS_GAP, "C".to_string()),
            ],
            "A at once, B dropped, C when the gap after A ends"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_is_pinged_at_half_its_interval_even_while_a_status_waits() {
        let (tx, sent, trigger, task) = start(Some(Duration::from_millis(300)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send_replace(status("A"));
        tokio::time::sleep(Duration::from_millis(1)).await;
        tx.send_replace(status("B"));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        trigger.fire();
        task.await.unwrap();
        let pings: Vec<Duration> = sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n)| *n == Notice::Watchdog)
            .map(|(at, _)| *at)
            .collect();
        assert!(pings.len() >= 7, "a ping every 150 ms over 1 s: {pings:?}");
        assert!(
            pings
                .windows(2)
                .all(|w| w[1] - w[0] <= Duration::from_millis(150)),
            "no gap between pings is longer than half the interval: {pings:?}"
        );
        assert_eq!(
            statuses(&sent).last().map(|(_, t)| t.clone()),
            Some("B".to_string())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn it_ends_when_told() {
        let (_tx, _sent, trigger, task) = start(Some(Duration::from_secs(2)));
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the follower ends at once")
            .unwrap();
    }
}
