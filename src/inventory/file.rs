//! `kind = "file"`: a JSON array of instances, re-read every pass, and watched (inotify on
//! Linux): a change to the file starts a pass within milliseconds instead of at the next
//! interval. An instance may announce maintenance in its `events` array. The file's directory is watched, not the file, because a careful producer
//! replaces the file by a rename, and a watch on the old file would see nothing of it.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};
use serde::Deserialize;
use toml::Spanned;

use super::{Inventory, SourceKind, SourceSpec, parse_events, parse_instances};
use crate::BoxFuture;
use crate::config::Fragment;
use crate::forecast::ScheduledEvent;
use crate::model::Instance;
use crate::trigger::{Cause, Trigger, Watch};

pub const KIND: SourceKind = SourceKind {
    name: "file",
    check,
};

/// A `kind = "file"` source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// `path`, resolved against the config's directory.
    pub path: PathBuf,
    /// `watch` (default true): a change to the file starts a pass.
    pub watch: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: Option<Spanned<String>>,
    watch: Option<bool>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn SourceSpec>> {
    let raw: RawFile = f.parse()?;
    let Some(path) = raw.path else {
        f.missing("path", "a file inventory needs `path = \"instances.json\"`");
        return None;
    };
    Some(Arc::new(FileConfig {
        path: f.checker.resolve_path(path.get_ref()),
        watch: raw.watch.unwrap_or(true),
    }))
}

impl SourceSpec for FileConfig {
    fn build(&self, name: &str, _timeout: Duration) -> anyhow::Result<Box<dyn Inventory>> {
        Ok(Box::new(FileInventory {
            name: name.to_string(),
            path: self.path.clone(),
            watch: self.watch,
        }))
    }
}

pub struct FileInventory {
    name: String,
    path: PathBuf,
    watch: bool,
}

/// Whether `event` may have changed the file named `file` in the watched directory: it
/// was created, written, renamed to or from, or removed. Reads (every pass opens the file)
/// and metadata changes (access times) do not count, or each pass would start the next.
fn changes(event: &Event, file: &OsStr) -> bool {
    let kind = match event.kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    };
    kind && event.paths.iter().any(|p| p.file_name() == Some(file))
}

impl Inventory for FileInventory {
    fn name(&self) -> &str {
        &self.name
    }

    fn watch(&self, trigger: Trigger) -> anyhow::Result<Option<Watch>> {
        if !self.watch {
            return Ok(None);
        }
        let (dir, file) = match (self.path.parent(), self.path.file_name()) {
            (Some(dir), Some(file)) => (dir.to_path_buf(), file.to_os_string()),
            _ => {
                return Err(anyhow!(
                    "inventory {:?}: {} names no file to watch",
                    self.name,
                    self.path.display()
                ));
            }
        };
        let name = self.name.clone();
        let handler = move |event: notify::Result<Event>| match event {
            Ok(event) if changes(&event, &file) => {
                let pass = trigger.fire(Cause::Source(name.clone()));
                tracing::debug!(source = %name, pass, event = ?event.kind, "inventory file changed");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(source = %name, "watching the inventory file: {e}"),
        };
        let cannot = |e: notify::Error| {
            anyhow!(
                "inventory {:?}: cannot watch {} for changes of {}: {e}; set `watch = false` to poll only",
                self.name,
                dir.display(),
                self.path.display()
            )
        };
        let mut watcher = notify::recommended_watcher(handler).map_err(cannot)?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(cannot)?;
        Ok(Some(Watch::new(watcher)))
    }

    fn list(&self) -> BoxFuture<'_, anyhow::Result<Vec<Instance>>> {
        Box::pin(async move {
            let text = tokio::fs::read_to_string(&self.path).await.map_err(|e| {
                anyhow!(
                    "inventory {:?}: cannot read {}: {e}",
                    self.name,
                    self.path.display()
                )
            })?;
            parse_instances(&text).map_err(|e| {
                anyhow!(
                    "inventory {:?}: {} is not a valid instance list: {e}",
                    self.name,
                    self.path.display()
                )
            })
        })
    }

    /// The instances' `events`. The file is read a second time: a listing whose events
    /// are malformed still repairs, and only the forewarning is reported missing.
    fn scheduled_events(&self) -> BoxFuture<'_, anyhow::Result<Vec<ScheduledEvent>>> {
        Box::pin(async move {
            let text = tokio::fs::read_to_string(&self.path)
                .await
                .map_err(|e| anyhow!("cannot read {}: {e}", self.path.display()))?;
            parse_events(&text).map_err(|e| anyhow!("{}: {e}", self.path.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn writes_renames_and_removals_of_the_file_count_and_reads_do_not() {
        let file = OsStr::new("instances.json");
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(
                changes(&event(kind, "/srv/instances.json"), file),
                "{kind:?}"
            );
            assert!(
                !changes(&event(kind, "/srv/instances.json.tmp"), file),
                "another file: {kind:?}"
            );
        }
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
            EventKind::Other,
        ] {
            assert!(
                !changes(&event(kind, "/srv/instances.json"), file),
                "{kind:?}"
            );
        }
    }
}
