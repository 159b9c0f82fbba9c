//! `health_status` events: the shim runs health checks and rewrites `health.json` in the
//! container's state dir after each probe; one daemon thread watches those directories with
//! inotify and turns every change of status into Docker's `health_status: <status>` event
//! (and wakes state waiters, so `compose up --wait` and `wait` see it at once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::engine::Engine;

pub(crate) struct HealthWatch {
    fd: Inotify,
    /// watch → (container id, last status seen)
    watches: Mutex<HashMap<WatchDescriptor, (String, String)>>,
}

impl HealthWatch {
    pub(crate) fn start(eng: Weak<Engine>) -> std::io::Result<Arc<HealthWatch>> {
        let fd = Inotify::init(InitFlags::IN_CLOEXEC).map_err(std::io::Error::from)?;
        let w = Arc::new(HealthWatch { fd, watches: Mutex::new(HashMap::new()) });
        let w2 = w.clone();
        std::thread::Builder::new()
            .name("health-watch".into())
            .stack_size(256 << 10)
            .spawn(move || w2.run(eng))?;
        Ok(w)
    }

    /// Follow container `id` whose shim writes its health to `state_dir`; `status` is the
    /// status it has now (no event for it).
    pub(crate) fn watch(&self, eng: &Engine, id: &str, status: &str) {
        match self.fd.add_watch(&eng.state_dir(id), AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE) {
            Ok(wd) => {
                if let Ok(mut m) = self.watches.lock() {
                    m.insert(wd, (id.to_string(), status.to_string()));
                }
                // a probe that finished before the watch existed
                self.check(eng, wd, false);
            }
            Err(e) => tracing::warn!(container = id, "cannot watch health: {e}"),
        }
    }

    pub(crate) fn unwatch(&self, id: &str) {
        let wd = self.watches.lock().ok().and_then(|mut m| {
            let wd = m.iter().find(|(_, (c, _))| c == id).map(|(wd, _)| *wd)?;
            m.remove(&wd);
            Some(wd)
        });
        if let Some(wd) = wd {
            let _ = self.fd.rm_watch(wd);
        }
    }

    fn run(&self, eng: Weak<Engine>) {
        loop {
            let events = match self.fd.read_events() {
                Ok(ev) => ev,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("health watch stopped: {e}");
                    return;
                }
            };
            let Some(eng) = eng.upgrade() else { return };
            for ev in events {
                if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                    if let Ok(mut m) = self.watches.lock() {
                        m.remove(&ev.wd);
                    }
                    continue;
                }
                if ev.name.as_deref().and_then(|n| n.to_str()) == Some(berth_runtime::health::HEALTH_FILE) {
                    self.check(&eng, ev.wd, true);
                }
            }
        }
    }

    /// Emit the event if the container's health file shows a new status.
    /// `wait: false` when the caller may hold the container's record lock.
    fn check(&self, eng: &Engine, wd: WatchDescriptor, wait: bool) {
        let Some(id) = self.watches.lock().ok().and_then(|m| m.get(&wd).map(|(c, _)| c.clone())) else {
            return;
        };
        let Ok(Some(h)) = berth_runtime::read_health(&eng.state_dir(&id)) else { return };
        let changed = self.watches.lock().ok().is_some_and(|mut m| match m.get_mut(&wd) {
            Some((_, last)) if *last != h.status => {
                *last = h.status.clone();
                true
            }
            _ => false,
        });
        if changed && h.status != "starting" {
            let attrs = |r: &crate::container::ContainerRecord| (r.name.clone(), r.config.image.clone().unwrap_or_default());
            let (name, image) = eng
                .get_container(&id)
                .ok()
                .and_then(|c| if wait { c.lock().ok().map(|r| attrs(&r)) } else { c.try_lock().ok().map(|r| attrs(&r)) })
                .unwrap_or_default();
            eng.events.emit("container", &format!("health_status: {}", h.status), &id, &[("image", &image), ("name", &name)]);
            eng.notify_state();
        }
    }
}
