//! The bot's own copy of the tracks its stations still need (the one playing and those queued), on
//! disk, so that Redis holds a track's audio only between the job's completion and its delivery.
//!
//! A station takes a finished job's audio as soon as it hears the job succeeded ([`collect`]): the
//! bytes are written here first and removed from Redis after, so a crash in between loses nothing (the
//! result then stays in Redis until `RADIO_RESULT_TTL_SECS`). Files live at
//! `<BOT_CACHE_DIR>/<guild>/<job>.ogg`. After each change a station drops the files it no longer refers
//! to ([`TrackCache::retain`]); past `BOT_CACHE_MAX_MB` the oldest files go first, whoever they belong
//! to. A bot restarted without its cache cannot replay the tracks it had: the station generates new
//! ones instead.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use radio_shared::job::JobId;
use radio_shared::queue::{Queue, QueueError};
use tracing::{debug, warn};

/// The file extension of a cached track.
const EXTENSION: &str = "ogg";

/// A cache operation failed; says which file.
#[derive(Debug, thiserror::Error)]
#[error("track cache file {path}: {source}")]
pub struct CacheError {
    /// The file or folder.
    pub path: PathBuf,
    /// What the file system said.
    pub source: io::Error,
}

/// The cache. Cheap to clone; file work runs on blocking threads.
#[derive(Debug, Clone)]
pub struct TrackCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
}

/// What is on disk, kept in memory so eviction and `retain` never scan folders.
#[derive(Debug, Default)]
struct Index {
    files: HashMap<PathBuf, Cached>,
    total_bytes: u64,
    /// The next write's place in the eviction order.
    next_seq: u64,
}

#[derive(Debug, Clone, Copy)]
struct Cached {
    bytes: u64,
    /// Lower is older: evicted first.
    seq: u64,
}

impl TrackCache {
    /// Opens (creating) the cache in `dir`, holding at most `max_bytes`: indexes the tracks a previous
    /// run left (oldest first by modification time) and removes half-written files.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, CacheError> {
        let dir = dir.into();
        let at = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(at(&dir))?;
        let mut found = Vec::new();
        for guild in std::fs::read_dir(&dir).map_err(at(&dir))? {
            let guild = guild.map_err(at(&dir))?.path();
            if !guild.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&guild).map_err(at(&guild))? {
                let path = file.map_err(at(&guild))?.path();
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                    // A write cut short by a crash (`.<job>.ogg.tmp`), or not ours to keep.
                    if is_partial(&path) {
                        let _ = std::fs::remove_file(&path);
                    }
                    continue;
                }
                let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                found.push((modified, path, meta.len()));
            }
        }
        found.sort();
        let mut index = Index::default();
        for (_, path, bytes) in found {
            index.insert(path, bytes);
        }
        let cache = Self {
            inner: Arc::new(Inner {
                dir,
                max_bytes,
                index: Mutex::new(index),
            }),
        };
        cache.inner.evict();
        Ok(cache)
    }

    /// The folder it keeps its files in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Bytes on disk now.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().total_bytes
    }

    /// Tracks on disk now.
    pub fn len(&self) -> usize {
        self.inner.lock().files.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores a track's audio (written whole, then renamed into place), then evicts the oldest files
    /// while over the limit.
    pub async fn put(&self, guild: u64, job: &JobId, audio: Arc<[u8]>) -> Result<(), CacheError> {
        let inner = self.inner.clone();
        let path = inner.path(guild, job);
        blocking(move || {
            let folder = path.parent().unwrap_or(&inner.dir).to_path_buf();
            std::fs::create_dir_all(&folder).map_err(|source| CacheError {
                path: folder,
                source,
            })?;
            let partial = partial_path(&path);
            std::fs::write(&partial, &audio)
                .and_then(|()| std::fs::rename(&partial, &path))
                .map_err(|source| {
                    let _ = std::fs::remove_file(&partial);
                    CacheError {
                        path: path.clone(),
                        source,
                    }
                })?;
            inner.lock().insert(path, audio.len() as u64);
            inner.evict();
            Ok(())
        })
        .await
    }

    /// A track's audio, if it is here.
    pub async fn get(&self, guild: u64, job: &JobId) -> Result<Option<Arc<[u8]>>, CacheError> {
        let path = self.inner.path(guild, job);
        blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes.into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CacheError { path, source }),
        })
        .await
    }

    /// Removes the guild's files for every job not in `keep`.
    pub async fn retain(&self, guild: u64, keep: HashSet<JobId>) {
        let inner = self.inner.clone();
        let folder = inner.dir.join(guild.to_string());
        let kept: HashSet<PathBuf> = keep.iter().map(|job| inner.path(guild, job)).collect();
        blocking(move || {
            let doomed: Vec<PathBuf> = inner
                .lock()
                .files
                .keys()
                .filter(|p| p.parent() == Some(folder.as_path()) && !kept.contains(*p))
                .cloned()
                .collect();
            for path in doomed {
                inner.remove(&path);
            }
        })
        .await;
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn path(&self, guild: u64, job: &JobId) -> PathBuf {
        // Guild ids are numbers and job ids are validated ULIDs: neither can leave the folder.
        self.dir
            .join(guild.to_string())
            .join(format!("{job}.{EXTENSION}"))
    }

    fn remove(&self, path: &Path) {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %path.display(), error = %e, "removing a cached track failed"),
        }
        self.lock().forget(path);
    }

    /// Removes the oldest files until the cache fits its limit (the newest file always stays).
    fn evict(&self) {
        loop {
            let oldest = {
                let index = self.lock();
                if index.total_bytes <= self.max_bytes || index.files.len() <= 1 {
                    return;
                }
                index
                    .files
                    .iter()
                    .min_by_key(|(_, c)| c.seq)
                    .map(|(p, _)| p.clone())
            };
            let Some(path) = oldest else { return };
            debug!(path = %path.display(), "track cache over BOT_CACHE_MAX_MB; evicting the oldest track");
            self.remove(&path);
        }
    }
}

impl Index {
    fn insert(&mut self, path: PathBuf, bytes: u64) {
        self.forget(&path);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.total_bytes += bytes;
        self.files.insert(path, Cached { bytes, seq });
    }

    fn forget(&mut self, path: &Path) {
        if let Some(old) = self.files.remove(path) {
            self.total_bytes -= old.bytes;
        }
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

fn is_partial(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A station's track audio: from the cache, else taken out of Redis into the cache (written to disk,
/// then removed from Redis). `Ok(None)`: neither has it (expired, or a restarted bot lost its cache).
///
/// When the cache cannot store it, the audio is still returned and stays in Redis until it expires.
pub async fn collect(
    queue: &Queue,
    cache: &TrackCache,
    guild: u64,
    job: &JobId,
) -> Result<Option<Arc<[u8]>>, QueueError> {
    match cache.get(guild, job).await {
        Ok(Some(audio)) => return Ok(Some(audio)),
        Ok(None) => {}
        Err(e) => {
            warn!(guild_id = guild, job_id = %job, error = %e, "reading a cached track failed; asking Redis")
        }
    }
    let Some(audio) = queue.result(job).await? else {
        return Ok(None);
    };
    let audio: Arc<[u8]> = audio.into();
    match cache.put(guild, job, audio.clone()).await {
        Ok(()) => {
            if let Err(e) = queue.forget_result(job).await {
                warn!(guild_id = guild, job_id = %job, error = %e, "removing a delivered result from Redis failed; it expires after RADIO_RESULT_TTL_SECS");
            }
        }
        Err(e) => {
            warn!(guild_id = guild, job_id = %job, error = %e, "caching a track failed; its result stays in Redis until RADIO_RESULT_TTL_SECS (check BOT_CACHE_DIR)");
        }
    }
    Ok(Some(audio))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "radio-track-cache-{name}-{}-{}",
            std::process::id(),
            JobId::new()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn audio(n: usize) -> Arc<[u8]> {
        vec![7u8; n].into()
    }

    #[tokio::test]
    async fn stores_reads_and_retains_per_guild() {
        let dir = temp_dir("retain");
        let cache = TrackCache::open(&dir, 1 << 20).expect("open");
        let (a, b, c) = (JobId::new(), JobId::new(), JobId::new());
        cache.put(1, &a, audio(10)).await.expect("put a");
        cache.put(1, &b, audio(20)).await.expect("put b");
        cache.put(2, &c, audio(30)).await.expect("put c");
        assert_eq!(cache.bytes(), 60);
        assert_eq!(
            cache.get(1, &a).await.expect("get").as_deref(),
            Some(&[7u8; 10][..])
        );
        assert!(
            cache.get(2, &a).await.expect("get").is_none(),
            "another guild's key"
        );

        cache.retain(1, HashSet::from([b.clone()])).await;
        assert!(
            cache.get(1, &a).await.expect("get").is_none(),
            "a was dropped"
        );
        assert!(cache.get(1, &b).await.expect("get").is_some(), "b was kept");
        assert!(
            cache.get(2, &c).await.expect("get").is_some(),
            "guild 2 untouched"
        );
        assert_eq!(cache.bytes(), 50);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn evicts_the_oldest_past_its_limit_and_reopens_what_is_left() {
        let dir = temp_dir("evict");
        let cache = TrackCache::open(&dir, 250).expect("open");
        let jobs: Vec<JobId> = (0..4).map(|_| JobId::new()).collect();
        for job in &jobs {
            cache.put(5, job, audio(100)).await.expect("put");
        }
        assert_eq!(cache.len(), 2, "two 100-byte tracks fit in 250 bytes");
        assert!(cache.get(5, &jobs[0]).await.expect("get").is_none());
        assert!(cache.get(5, &jobs[1]).await.expect("get").is_none());
        assert!(cache.get(5, &jobs[3]).await.expect("get").is_some());

        // A crash mid-write leaves a partial file: the next start removes it and keeps the rest.
        let partial = partial_path(&dir.join("5").join(format!("{}.ogg", JobId::new())));
        std::fs::write(&partial, b"half").expect("partial");
        let reopened = TrackCache::open(&dir, 250).expect("reopen");
        assert_eq!(reopened.len(), 2);
        assert_eq!(reopened.bytes(), 200);
        assert!(!partial.exists(), "the partial file was removed");
        assert!(reopened.get(5, &jobs[2]).await.expect("get").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
