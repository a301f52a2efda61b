//! Model packs: a folder of ONNX graphs, `tokenizer.json`, the silence latent and a manifest (`pack.toml`)
//! that maps each [`Role`] to a file and to the graph's real tensor names.
//!
//! ```toml
//! [pack]
//! name = "acestep15-q4"
//! family = "acestep15"
//! tokenizer = "tokenizer.json"
//! silence_latent = "silence_latent.npy"
//!
//! [roles.dit]
//! file = "onnx/dit_decoder_q4.onnx"
//! external_data = ["onnx/dit_decoder_q4.onnx.data"]
//! precision = "q4"
//! inputs = { hidden_states = "hidden_states", timestep = "timestep", … }
//! outputs = { velocity = "velocity" }
//! # Graph inputs the pipeline has no slot for, filled with one value (dims: numbers or T, L, S, F, N).
//! constants = [{ name = "attention_mask", value = 1.0, shape = [1, "F"] }]
//! ```
//!
//! Opening a pack checks the manifest and that every file exists ([`ModelPack::open`]); loading a pipeline
//! then checks every bound tensor against the graph. Both report every problem at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Role;
use super::npy;

/// The manifest file name inside a pack folder.
pub const MANIFEST_FILE: &str = "pack.toml";

/// Element type of a graph tensor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// 64-bit integer.
    I64,
    /// 32-bit integer.
    I32,
    /// Boolean.
    Bool,
    /// Anything else, as ONNX Runtime names it.
    Other(String),
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DType::F32 => f.write_str("f32"),
            DType::F16 => f.write_str("f16"),
            DType::I64 => f.write_str("i64"),
            DType::I32 => f.write_str("i32"),
            DType::Bool => f.write_str("bool"),
            DType::Other(name) => f.write_str(name),
        }
    }
}

/// One input or output of a graph, as ONNX Runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name in the graph.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Dimensions: a number, or the symbol of a dynamic axis (`?` when unnamed).
    pub shape: Vec<String>,
}

impl fmt::Display for TensorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} [{}]",
            self.name,
            self.dtype,
            self.shape.join(", ")
        )
    }
}

/// The real inputs and outputs of a graph.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphIo {
    /// Inputs, in graph order.
    pub inputs: Vec<TensorInfo>,
    /// Outputs, in graph order.
    pub outputs: Vec<TensorInfo>,
}

/// Weight precision of a graph, as the manifest declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// 4-bit weights (`q4`, `q4v2`, `int4`).
    Int4,
    /// 8-bit weights (`q8`, `int8`).
    Int8,
    /// Half precision (`fp16`).
    Fp16,
    /// Brain float (`bf16`).
    Bf16,
    /// Single precision (`fp32`).
    Fp32,
}

impl Precision {
    /// Parses a manifest's `precision` value.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "q4" | "q4v2" | "int4" | "uint4" => Some(Precision::Int4),
            "q8" | "int8" | "uint8" => Some(Precision::Int8),
            "fp16" | "f16" | "float16" => Some(Precision::Fp16),
            "bf16" | "bfloat16" => Some(Precision::Bf16),
            "fp32" | "f32" | "float32" => Some(Precision::Fp32),
            _ => None,
        }
    }

    /// Bytes per weight, for memory estimates.
    pub fn bytes_per_weight(self) -> f64 {
        match self {
            Precision::Int4 => 0.5,
            Precision::Int8 => 1.0,
            Precision::Fp16 | Precision::Bf16 => 2.0,
            Precision::Fp32 => 4.0,
        }
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Int4 => "int4",
            Precision::Int8 => "int8",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
            Precision::Fp32 => "fp32",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the memory planner needs to know about one graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleInventory {
    /// The graph file.
    pub file: PathBuf,
    /// Bytes of the `.onnx` file.
    pub model_bytes: u64,
    /// Bytes of its external data files (`.onnx.data`).
    pub external_data_bytes: u64,
    /// Weight precision, from the manifest.
    pub precision: Precision,
}

impl RoleInventory {
    /// Model plus external data: roughly the weights' memory once loaded.
    pub fn bytes(&self) -> u64 {
        self.model_bytes + self.external_data_bytes
    }
}

/// Sizes and precisions of every graph in a pack.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Inventory {
    /// Per role.
    pub roles: BTreeMap<Role, RoleInventory>,
}

impl Inventory {
    /// All graphs together, in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.roles.values().map(RoleInventory::bytes).sum()
    }
}

/// One thing wrong with a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackProblem {
    /// The role concerned (`None` for pack-wide files), as written in the manifest.
    pub role: Option<String>,
    /// The file concerned.
    pub file: Option<PathBuf>,
    /// The tensor concerned.
    pub tensor: Option<String>,
    /// What is wrong: expected versus found, and what to do.
    pub message: String,
}

impl PackProblem {
    pub(crate) fn new(
        role: Option<&str>,
        file: Option<&Path>,
        tensor: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            role: role.map(str::to_string),
            file: file.map(Path::to_path_buf),
            tensor: tensor.map(str::to_string),
            message: message.into(),
        }
    }
}

impl fmt::Display for PackProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(role) = &self.role {
            write!(f, "{role}")?;
            sep = " ";
        }
        if let Some(file) = &self.file {
            write!(f, "{sep}({})", file.display())?;
            sep = " ";
        }
        if let Some(tensor) = &self.tensor {
            write!(f, "{sep}tensor {tensor:?}")?;
        }
        if self.role.is_some() || self.file.is_some() || self.tensor.is_some() {
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a model pack cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// There is no manifest to read.
    #[error(
        "no model pack at {path}: {reason}. A pack is a folder with a {MANIFEST_FILE} (see worker/packs/ for the \
         public ACE-Step 1.5 export) or the path of such a manifest"
    )]
    Unreadable {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The manifest is not valid TOML of the expected shape.
    #[error("{path} is not a valid pack manifest: {message}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The manifest names a model family this build does not know.
    #[error("{manifest} declares family {family:?}; this build renders \"acestep15\" only")]
    UnknownFamily {
        /// The manifest.
        manifest: PathBuf,
        /// The family it names.
        family: String,
    },
    /// Files are missing or graphs do not match the manifest.
    #[error("model pack {} has {} problem(s):\n{}", pack.display(), problems.len(), list(problems))]
    Invalid {
        /// The manifest.
        pack: PathBuf,
        /// Every problem found.
        problems: Vec<PackProblem>,
    },
}

fn list(problems: &[PackProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `pack.toml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    pack: PackSection,
    roles: BTreeMap<String, RoleEntry>,
}

/// The `[pack]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackSection {
    name: String,
    family: String,
    #[serde(default)]
    description: Option<String>,
    tokenizer: PathBuf,
    silence_latent: PathBuf,
}

/// One `[roles.<role>]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleEntry {
    file: PathBuf,
    precision: String,
    #[serde(default)]
    external_data: Vec<PathBuf>,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
    #[serde(default)]
    outputs: BTreeMap<String, String>,
    #[serde(default)]
    constants: Vec<ConstantEntry>,
}

/// One entry of a role's `constants`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstantEntry {
    name: String,
    value: f64,
    shape: Vec<DimEntry>,
}

/// A dimension as written: a number or a symbol.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DimEntry {
    Fixed(usize),
    Symbol(String),
}

/// A dimension of a constant input: fixed, or one of the lengths known when the graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// Caption tokens.
    T,
    /// Lyric tokens.
    L,
    /// Packed condition length.
    S,
    /// Latent frames as fed to the graph.
    F,
    /// Reference latents.
    N,
}

/// Lengths known while a graph runs, for [`Dim`] symbols.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DimValues {
    /// Caption tokens.
    pub(crate) t: Option<usize>,
    /// Lyric tokens.
    pub(crate) l: Option<usize>,
    /// Packed condition length.
    pub(crate) s: Option<usize>,
    /// Latent frames as fed to the graph.
    pub(crate) f: Option<usize>,
    /// Reference latents.
    pub(crate) n: Option<usize>,
}

impl DimValues {
    /// With T set.
    pub(crate) fn t(self, t: usize) -> Self {
        Self { t: Some(t), ..self }
    }

    /// With L set.
    pub(crate) fn l(self, l: usize) -> Self {
        Self { l: Some(l), ..self }
    }

    /// With S set.
    pub(crate) fn s(self, s: usize) -> Self {
        Self { s: Some(s), ..self }
    }

    /// With F set.
    pub(crate) fn f(self, f: usize) -> Self {
        Self { f: Some(f), ..self }
    }

    /// With N set.
    pub(crate) fn n(self, n: usize) -> Self {
        Self { n: Some(n), ..self }
    }
}

/// An input the pipeline has no slot for, filled with one value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConstantInput {
    /// The graph input's name.
    pub(crate) name: String,
    /// The value every element gets.
    pub(crate) value: f64,
    /// Its shape, resolved when the graph runs.
    pub(crate) shape: Vec<Dim>,
}

impl ConstantInput {
    /// The concrete shape, or the symbol that has no value in this graph.
    pub(crate) fn resolve(&self, dims: &DimValues) -> Result<Vec<usize>, &'static str> {
        self.shape
            .iter()
            .map(|dim| match dim {
                Dim::Fixed(n) => Ok(*n),
                Dim::T => dims.t.ok_or("T"),
                Dim::L => dims.l.ok_or("L"),
                Dim::S => dims.s.ok_or("S"),
                Dim::F => dims.f.ok_or("F"),
                Dim::N => dims.n.ok_or("N"),
            })
            .collect()
    }
}

/// A role as the manifest binds it, with paths resolved against the pack folder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RoleBinding {
    /// The graph file.
    pub(crate) file: PathBuf,
    /// Weight precision.
    pub(crate) precision: Precision,
    /// Input slot to graph input name.
    pub(crate) inputs: BTreeMap<String, String>,
    /// Output slot to graph output name.
    pub(crate) outputs: BTreeMap<String, String>,
    /// Graph inputs filled with one value.
    pub(crate) constants: Vec<ConstantInput>,
}

/// An opened model pack whose files all exist.
#[derive(Debug, Clone)]
pub struct ModelPack {
    /// The manifest file.
    manifest_path: PathBuf,
    /// The folder its paths are relative to.
    root: PathBuf,
    /// `pack.name`.
    name: String,
    /// `pack.family`: which pipeline runs this pack.
    family: String,
    /// `pack.description`.
    description: Option<String>,
    /// `tokenizer.json`, resolved.
    tokenizer: PathBuf,
    /// The silence latent, resolved.
    silence_latent: PathBuf,
    /// Every role the manifest binds.
    roles: BTreeMap<Role, RoleBinding>,
    /// Sizes and precisions, computed once at open.
    inventory: Inventory,
}

impl ModelPack {
    /// Opens a pack: `path` is a folder with a `pack.toml`, or a manifest file whose paths are relative to
    /// its folder. Checks the manifest and that every file it names exists, reporting all problems at once.
    pub fn open(path: &Path) -> Result<Self, PackError> {
        let manifest_path = if path.is_dir() {
            path.join(MANIFEST_FILE)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| PackError::Unreadable {
            path: manifest_path.clone(),
            reason: e.to_string(),
        })?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| PackError::Manifest {
            path: manifest_path.clone(),
            message: e.to_string(),
        })?;
        let root = manifest_path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);

        let mut problems = Vec::new();
        let mut roles = BTreeMap::new();
        let mut inventory = Inventory::default();
        for (key, entry) in &manifest.roles {
            let Some(role) = Role::from_key(key) else {
                problems.push(PackProblem::new(
                    Some(key),
                    None,
                    None,
                    format!(
                        "unknown role; the roles are {}",
                        super::Role::ALL.map(Role::as_str).join(", ")
                    ),
                ));
                continue;
            };
            if let Some((binding, entry_inventory)) = open_role(&root, key, entry, &mut problems) {
                roles.insert(role, binding);
                inventory.roles.insert(role, entry_inventory);
            }
        }

        let tokenizer = root.join(&manifest.pack.tokenizer);
        if !tokenizer.is_file() {
            problems.push(PackProblem::new(
                None,
                Some(&tokenizer),
                None,
                "tokenizer file is missing (the Qwen3-Embedding-0.6B tokenizer.json)",
            ));
        }
        let silence_latent = root.join(&manifest.pack.silence_latent);
        match npy::read_f32_shape(&silence_latent) {
            Ok(shape) if shape.len() == 3 && shape[0] == 1 && shape[1] == 64 => {}
            Ok(shape) => problems.push(PackProblem::new(
                None,
                Some(&silence_latent),
                None,
                format!(
                    "silence latent has shape {shape:?}; expected [1, 64, frames] (channel-major, like \
                     silence_latent.pt)"
                ),
            )),
            Err(e) => problems.push(PackProblem::new(
                None,
                Some(&silence_latent),
                None,
                format!("silence latent cannot be read: {e}"),
            )),
        }

        if !problems.is_empty() {
            return Err(PackError::Invalid {
                pack: manifest_path,
                problems,
            });
        }
        Ok(Self {
            manifest_path,
            root,
            name: manifest.pack.name,
            family: manifest.pack.family,
            description: manifest.pack.description,
            tokenizer,
            silence_latent,
            roles,
            inventory,
        })
    }

    /// The pack's name from its manifest.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model family (`acestep15`).
    pub fn family(&self) -> &str {
        &self.family
    }

    /// The manifest's description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The manifest file.
    pub fn manifest_path(&self) -> &Path {
        &self.manifest_path
    }

    /// The folder the manifest's paths are relative to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The tokenizer file.
    pub fn tokenizer_path(&self) -> &Path {
        &self.tokenizer
    }

    /// The silence latent file.
    pub fn silence_latent_path(&self) -> &Path {
        &self.silence_latent
    }

    /// The roles the manifest binds.
    pub fn roles(&self) -> impl Iterator<Item = Role> + '_ {
        self.roles.keys().copied()
    }

    /// The graph file of a role.
    pub fn role_file(&self, role: Role) -> Option<&Path> {
        self.roles.get(&role).map(|b| b.file.as_path())
    }

    /// File sizes and precisions per role, for the memory planner.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    pub(crate) fn binding(&self, role: Role) -> Option<&RoleBinding> {
        self.roles.get(&role)
    }
}

fn file_bytes(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

fn open_role(
    root: &Path,
    key: &str,
    entry: &RoleEntry,
    problems: &mut Vec<PackProblem>,
) -> Option<(RoleBinding, RoleInventory)> {
    let before = problems.len();
    let file = root.join(&entry.file);
    let model_bytes = match file_bytes(&file) {
        Some(0) => {
            problems.push(PackProblem::new(
                Some(key),
                Some(&file),
                None,
                "graph file is empty; download it again",
            ));
            0
        }
        Some(n) => n,
        None => {
            problems.push(PackProblem::new(
                Some(key),
                Some(&file),
                None,
                "graph file is missing; download it or fix `file` in the manifest",
            ));
            0
        }
    };
    let mut external = entry
        .external_data
        .iter()
        .map(|p| root.join(p))
        .collect::<Vec<_>>();
    if external.is_empty() {
        // Not declared: count the conventional sibling if it is there (ONNX Runtime finds it by itself).
        let sibling = PathBuf::from(format!("{}.data", file.display()));
        if sibling.is_file() {
            external.push(sibling);
        }
    }
    let mut external_data_bytes = 0;
    for data in &external {
        match file_bytes(data) {
            Some(n) => external_data_bytes += n,
            None => problems.push(PackProblem::new(
                Some(key),
                Some(data),
                None,
                "external data file is missing; it must sit beside its .onnx file under the name the graph \
                 references",
            )),
        }
    }
    let precision = Precision::parse(&entry.precision);
    if precision.is_none() {
        problems.push(PackProblem::new(
            Some(key),
            Some(&file),
            None,
            format!(
                "precision {:?} is not one of q4, q4v2, int4, int8, fp16, bf16, fp32",
                entry.precision
            ),
        ));
    }
    let mut constants = Vec::new();
    for constant in &entry.constants {
        let mut shape = Vec::new();
        for dim in &constant.shape {
            shape.push(match dim {
                DimEntry::Fixed(n) => Dim::Fixed(*n),
                DimEntry::Symbol(s) => match s.as_str() {
                    "T" => Dim::T,
                    "L" => Dim::L,
                    "S" => Dim::S,
                    "F" => Dim::F,
                    "N" => Dim::N,
                    other => {
                        problems.push(PackProblem::new(
                            Some(key),
                            Some(&file),
                            Some(&constant.name),
                            format!(
                                "constant dimension {other:?} is not a number or one of T, L, S, F, N"
                            ),
                        ));
                        Dim::Fixed(1)
                    }
                },
            });
        }
        constants.push(ConstantInput {
            name: constant.name.clone(),
            value: constant.value,
            shape,
        });
    }
    if problems.len() > before {
        return None;
    }
    let precision = precision?;
    Some((
        RoleBinding {
            file: file.clone(),
            precision,
            inputs: entry.inputs.clone(),
            outputs: entry.outputs.clone(),
            constants,
        },
        RoleInventory {
            file,
            model_bytes,
            external_data_bytes,
            precision,
        },
    ))
}

/// What kind of values a slot carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotKind {
    /// f32 data.
    F32,
    /// i64 token ids or indices.
    I64,
    /// A mask or flag: whatever integer, float or bool type the graph declares is filled.
    Fill,
}

impl SlotKind {
    fn accepts(self, dtype: &DType) -> bool {
        match self {
            SlotKind::F32 => *dtype == DType::F32,
            SlotKind::I64 => *dtype == DType::I64,
            SlotKind::Fill => matches!(dtype, DType::F32 | DType::I64 | DType::I32 | DType::Bool),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            SlotKind::F32 => "f32",
            SlotKind::I64 => "i64",
            SlotKind::Fill => "f32, i64, i32 or bool",
        }
    }
}

/// One tensor the pipeline feeds or reads, by its slot name in the manifest.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// The key in the manifest's `inputs`/`outputs` table.
    pub(crate) name: &'static str,
    /// The dtypes it accepts.
    pub(crate) kind: SlotKind,
    /// Its rank.
    pub(crate) rank: usize,
    /// Whether a manifest must bind it.
    pub(crate) required: bool,
}

/// The slots of one role, as a model family defines them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoleContract {
    /// The role.
    pub(crate) role: Role,
    /// What the pipeline feeds it.
    pub(crate) inputs: &'static [Slot],
    /// What the pipeline reads from it.
    pub(crate) outputs: &'static [Slot],
}

/// Checks a loaded graph against its binding and contract, adding every mismatch to `problems`.
pub(crate) fn check_graph(
    contract: &RoleContract,
    binding: &RoleBinding,
    io: &GraphIo,
    problems: &mut Vec<PackProblem>,
) {
    let role = contract.role.as_str();
    let file = binding.file.as_path();
    let names = |tensors: &[TensorInfo]| {
        tensors
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut problem = |tensor: Option<&str>, message: String| {
        problems.push(PackProblem::new(Some(role), Some(file), tensor, message));
    };

    for (side, slots, bound, tensors) in [
        ("input", contract.inputs, &binding.inputs, &io.inputs),
        ("output", contract.outputs, &binding.outputs, &io.outputs),
    ] {
        for slot in slots {
            let Some(tensor_name) = bound.get(slot.name) else {
                if slot.required {
                    problem(
                        None,
                        format!(
                            "{side} slot {:?} is not bound; add it to `{side}s` in the manifest (the graph's \
                             {side}s: {})",
                            slot.name,
                            names(tensors)
                        ),
                    );
                }
                continue;
            };
            let Some(found) = tensors.iter().find(|t| &t.name == tensor_name) else {
                problem(
                    Some(tensor_name),
                    format!(
                        "the graph has no {side} of this name (bound to slot {:?}); its {side}s are: {}",
                        slot.name,
                        names(tensors)
                    ),
                );
                continue;
            };
            if !slot.kind.accepts(&found.dtype) || found.shape.len() != slot.rank {
                problem(
                    Some(tensor_name),
                    format!(
                        "expected {} of rank {} for slot {:?}, found {} of rank {} [{}]",
                        slot.kind.describe(),
                        slot.rank,
                        slot.name,
                        found.dtype,
                        found.shape.len(),
                        found.shape.join(", ")
                    ),
                );
            }
        }
        let known: BTreeSet<&str> = slots.iter().map(|s| s.name).collect();
        for slot in bound.keys().filter(|k| !known.contains(k.as_str())) {
            problem(
                None,
                format!(
                    "unknown {side} slot {slot:?}; the {role} slots are: {}",
                    slots.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }

    for constant in &binding.constants {
        match io.inputs.iter().find(|t| t.name == constant.name) {
            None => problem(
                Some(&constant.name),
                format!(
                    "constant names no input of the graph; its inputs are: {}",
                    names(&io.inputs)
                ),
            ),
            Some(found) if !SlotKind::Fill.accepts(&found.dtype) => problem(
                Some(&constant.name),
                format!("cannot fill an input of dtype {}", found.dtype),
            ),
            Some(found) if found.shape.len() != constant.shape.len() => problem(
                Some(&constant.name),
                format!(
                    "constant has rank {}, the input has rank {} [{}]",
                    constant.shape.len(),
                    found.shape.len(),
                    found.shape.join(", ")
                ),
            ),
            Some(_) => {}
        }
    }

    let fed: BTreeSet<&str> = binding
        .inputs
        .values()
        .map(String::as_str)
        .chain(binding.constants.iter().map(|c| c.name.as_str()))
        .collect();
    for input in io.inputs.iter().filter(|t| !fed.contains(t.name.as_str())) {
        problem(
            Some(&input.name),
            format!(
                "graph input ({} [{}]) is not bound; bind it to a slot under `inputs` or fill it under \
                 `constants`",
                input.dtype,
                input.shape.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_names_parse() {
        assert_eq!(Precision::parse("q4"), Some(Precision::Int4));
        assert_eq!(Precision::parse("Q4V2"), Some(Precision::Int4));
        assert_eq!(Precision::parse("fp16"), Some(Precision::Fp16));
        assert_eq!(Precision::parse("fp32"), Some(Precision::Fp32));
        assert_eq!(Precision::parse("fp8"), None);
    }

    #[test]
    fn problems_read_as_role_file_tensor_message() {
        let p = PackProblem::new(
            Some("dit"),
            Some(Path::new("onnx/dit.onnx")),
            Some("timestep"),
            "expected f32 of rank 1, found i64 of rank 1",
        );
        assert_eq!(
            p.to_string(),
            "dit (onnx/dit.onnx) tensor \"timestep\": expected f32 of rank 1, found i64 of rank 1"
        );
    }
}
