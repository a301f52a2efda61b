//! GPU memory, measured: the device found through NVML, and a sampler that records the peak memory of
//! each job and each of its stages while it runs.
//!
//! NVML (`libnvidia-ml.so.1`) is loaded at run time. On a machine without NVIDIA it fails to load, the
//! worker says so once and runs on CPU, and every peak is 0 bytes, labelled `device="cpu"`.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;
use radio_shared::job::Stage;

/// How often the sampler polls while a job runs (25 Hz, above the 20 Hz the design asks for).
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(40);

/// What the worker found at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// NVML device index.
    pub index: u32,
    /// e.g. `NVIDIA GeForce RTX 4060 Laptop GPU`.
    pub name: String,
    /// Memory on the card, bytes.
    pub total_bytes: u64,
    /// Memory free when probed, bytes.
    pub free_bytes: u64,
}

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// Memory in use on the whole device, bytes.
    pub device_used_bytes: u64,
    /// Memory this process uses, bytes, when the driver reports it.
    pub process_used_bytes: Option<u64>,
    /// GPU utilisation, percent.
    pub utilization_percent: Option<u32>,
}

/// A handle on one NVIDIA GPU through NVML.
pub struct GpuMonitor {
    nvml: Nvml,
    info: GpuInfo,
    pid: u32,
}

impl std::fmt::Debug for GpuMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuMonitor")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl GpuMonitor {
    /// Loads NVML and opens device `index`. The error says why there is no GPU to use.
    pub fn probe(index: u32) -> Result<Self, String> {
        let nvml = Nvml::init().map_err(|e| {
            format!("NVML is not available ({e}): no NVIDIA driver on this machine")
        })?;
        let count = nvml
            .device_count()
            .map_err(|e| format!("NVML cannot count devices: {e}"))?;
        if index >= count {
            return Err(format!(
                "GPU index {index} does not exist (NVML sees {count} devices)"
            ));
        }
        let device = nvml
            .device_by_index(index)
            .map_err(|e| format!("NVML cannot open GPU {index}: {e}"))?;
        let memory = device
            .memory_info()
            .map_err(|e| format!("NVML cannot read the memory of GPU {index}: {e}"))?;
        let name = device.name().unwrap_or_else(|_| format!("GPU {index}"));
        let info = GpuInfo {
            index,
            name,
            total_bytes: memory.total,
            free_bytes: memory.free,
        };
        Ok(Self {
            nvml,
            info,
            pid: std::process::id(),
        })
    }

    /// The device as probed.
    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    /// Reads memory and utilisation now.
    pub fn sample(&self) -> Option<Sample> {
        let device = self.nvml.device_by_index(self.info.index).ok()?;
        let memory = device.memory_info().ok()?;
        let process_used_bytes = device
            .running_compute_processes()
            .ok()
            .and_then(|processes| {
                processes
                    .iter()
                    .filter(|p| p.pid == self.pid)
                    .map(|p| match p.used_gpu_memory {
                        UsedGpuMemory::Used(bytes) => bytes,
                        UsedGpuMemory::Unavailable => 0,
                    })
                    .max()
            });
        Some(Sample {
            device_used_bytes: memory.used,
            process_used_bytes,
            utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
        })
    }
}

/// The stage a job is in, shared between the code running it and the sampler.
#[derive(Debug, Clone, Default)]
pub struct StageTracker(Arc<AtomicU8>);

impl StageTracker {
    /// Marks `stage` as running.
    pub fn enter(&self, stage: Stage) {
        let index = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        self.0.store(index as u8 + 1, Ordering::Relaxed);
    }

    /// The stage running now, if any.
    pub fn current(&self) -> Option<Stage> {
        let value = self.0.load(Ordering::Relaxed);
        value
            .checked_sub(1)
            .and_then(|i| Stage::ALL.get(usize::from(i)).copied())
    }
}

/// Peak memory of one job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Peaks {
    /// Peak of this process's GPU memory (device memory when per-process figures are unavailable).
    pub job_bytes: u64,
    /// The same per stage, in [`Stage::ALL`] order.
    pub stage_bytes: [u64; 5],
    /// Readings taken.
    pub samples: u64,
    /// Achieved sampling rate.
    pub hz: f64,
}

/// Polls the GPU on its own thread while a job runs (a blocked inference call cannot delay it).
#[derive(Debug)]
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<Peaks>>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
}

impl PeakSampler {
    /// Starts sampling `monitor` (nothing to sample on CPU: pass `None`, peaks stay 0).
    pub fn start(monitor: Option<Arc<GpuMonitor>>, stages: StageTracker) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new(Peaks::default()));
        let thread = monitor.map(|monitor| {
            let (stop, peaks) = (stop.clone(), peaks.clone());
            std::thread::Builder::new()
                .name("vram-sampler".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(sample) = monitor.sample() {
                            let bytes = sample
                                .process_used_bytes
                                .unwrap_or(sample.device_used_bytes);
                            let mut p = peaks
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner());
                            p.samples += 1;
                            p.job_bytes = p.job_bytes.max(bytes);
                            if let Some(stage) = stages.current() {
                                let i = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
                                p.stage_bytes[i] = p.stage_bytes[i].max(bytes);
                            }
                        }
                        std::thread::sleep(SAMPLE_INTERVAL);
                    }
                })
                .ok()
        });
        Self {
            stop,
            peaks,
            thread: thread.flatten(),
            started: Instant::now(),
        }
    }

    /// Stops sampling and returns the peaks.
    pub fn finish(mut self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let mut peaks = self.peaks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let secs = self.started.elapsed().as_secs_f64();
        peaks.hz = if secs > 0.0 {
            peaks.samples as f64 / secs
        } else {
            0.0
        };
        peaks
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_tracker_reports_the_stage_entered_last() {
        let tracker = StageTracker::default();
        assert_eq!(tracker.current(), None);
        tracker.enter(Stage::Diffusion);
        assert_eq!(tracker.current(), Some(Stage::Diffusion));
        tracker.enter(Stage::Encode);
        assert_eq!(tracker.current(), Some(Stage::Encode));
    }

    #[test]
    fn without_a_gpu_the_sampler_reports_zero_peaks() {
        let sampler = PeakSampler::start(None, StageTracker::default());
        std::thread::sleep(Duration::from_millis(50));
        let peaks = sampler.finish();
        assert_eq!((peaks.job_bytes, peaks.samples), (0, 0));
    }
}
