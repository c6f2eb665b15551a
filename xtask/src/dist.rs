//! `cargo xtask dist`: the release archive of the `mailroom` binary, and `--check` that
//! verifies one (checksum, contents, the binary runs and prints the workspace version).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::workspace::{CLI_PACKAGE, Workspace};

/// The binary's name, inside the archive and in `target/release`.
const BINARY: &str = "mailroom";

/// The documents copied from the workspace root into the archive.
const DOCUMENTS: &[&str] = &["README.md", "LICENSE-MIT", "LICENSE-APACHE"];

/// Shell -> where its completion script goes in the archive (the names each shell's
/// completion loader looks for).
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "completions/mailroom.bash"),
    ("zsh", "completions/_mailroom"),
    ("fish", "completions/mailroom.fish"),
    ("powershell", "completions/_mailroom.ps1"),
];

const MAN_PAGE: &str = "man/mailroom.1";

/// The checksum file beside the archives, in `sha256sum --check` format.
const CHECKSUMS: &str = "SHA256SUMS";

pub(crate) fn dist(workspace: &Workspace, args: &[String]) -> Result<()> {
    match args {
        [] => build(workspace),
        [flag] if flag == "--check" => check(workspace, None),
        [flag, archive] if flag == "--check" => check(workspace, Some(Path::new(archive))),
        _ => bail!("usage: cargo xtask dist [--check [ARCHIVE]]"),
    }
}

/// Every file the archive holds, relative to its top folder.
fn expected_files() -> Vec<&'static str> {
    let mut files = vec![BINARY];
    files.extend(DOCUMENTS);
    files.extend(COMPLETIONS.iter().map(|(_, path)| *path));
    files.push(MAN_PAGE);
    files
}

/// `mailroom-VERSION-TARGET`: the archive's name without `.tar.gz`, and its top folder.
fn release_name(version: &str, target: &str) -> String {
    format!("{BINARY}-{version}-{target}")
}

fn dist_dir(workspace: &Workspace) -> PathBuf {
    workspace.target_dir.join("dist")
}

fn build(workspace: &Workspace) -> Result<()> {
    let version = workspace.version()?;
    let target = host_target()?;
    let started = Instant::now();
    crate::cargo(&[
        "build",
        "--release",
        "--locked",
        "--package",
        CLI_PACKAGE,
        "--bin",
        BINARY,
    ])?;
    let built_in = started.elapsed();
    let binary_path = workspace
        .target_dir
        .join("release")
        .join(format!("{BINARY}{}", std::env::consts::EXE_SUFFIX));
    let mut files = vec![ArchiveFile {
        path: BINARY.to_owned(),
        contents: std::fs::read(&binary_path)
            .with_context(|| format!("cannot read {}", binary_path.display()))?,
        executable: true,
    }];
    for document in DOCUMENTS {
        let path = workspace.root.join(document);
        files.push(ArchiveFile {
            path: (*document).to_owned(),
            contents: std::fs::read(&path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            executable: false,
        });
    }
    // The completions and the manual page come from the binary just built, so they match it.
    for (shell, path) in COMPLETIONS {
        files.push(ArchiveFile {
            path: (*path).to_owned(),
            contents: run_binary(&binary_path, &["completions", shell])?,
            executable: false,
        });
    }
    files.push(ArchiveFile {
        path: MAN_PAGE.to_owned(),
        contents: run_binary(&binary_path, &["man"])?,
        executable: false,
    });
    let archive = write_archive(
        &dist_dir(workspace),
        &release_name(version, &target),
        &files,
        modification_time(),
    )?;
    let size = std::fs::metadata(&archive)?.len();
    println!(
        "xtask dist: {} ({size} bytes, {:.1} MiB; binary {:.1} MiB stripped); release build {:.0} s",
        workspace.relative(&archive).display(),
        size as f64 / 1_048_576.0,
        files[0].contents.len() as f64 / 1_048_576.0,
        built_in.as_secs_f64()
    );
    println!(
        "xtask dist: checksum in {}",
        workspace
            .relative(&dist_dir(workspace).join(CHECKSUMS))
            .display()
    );
    Ok(())
}

/// One file to put in the archive.
#[derive(Debug)]
struct ArchiveFile {
    /// Relative to the archive's top folder.
    path: String,
    contents: Vec<u8>,
    executable: bool,
}

/// Writes `dir/NAME.tar.gz` (every file under the folder `NAME/`) and `dir/SHA256SUMS`
/// naming it; returns the archive's path.
fn write_archive(dir: &Path, name: &str, files: &[ArchiveFile], mtime: u64) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file_name = format!("{name}.tar.gz");
    let archive_path = dir.join(&file_name);
    let file = File::create(&archive_path)
        .with_context(|| format!("cannot create {}", archive_path.display()))?;
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::best(),
    ));
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(file.contents.len() as u64);
        header.set_mode(if file.executable { 0o755 } else { 0o644 });
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(
                &mut header,
                format!("{name}/{}", file.path),
                file.contents.as_slice(),
            )
            .with_context(|| format!("cannot add {} to the archive", file.path))?;
    }
    builder
        .into_inner()
        .and_then(flate2::write::GzEncoder::finish)
        .and_then(|mut file| file.flush())
        .with_context(|| format!("cannot write {}", archive_path.display()))?;
    let digest = sha256_of(&archive_path)?;
    // One line per archive: a later build for another version or target keeps its line.
    let checksums_path = dir.join(CHECKSUMS);
    let mut lines: Vec<String> = std::fs::read_to_string(&checksums_path)
        .unwrap_or_default()
        .lines()
        .filter(|line| checksum_line_name(line) != Some(file_name.as_str()))
        .map(str::to_owned)
        .collect();
    lines.push(format!("{digest}  {file_name}"));
    lines.sort_by(|a, b| checksum_line_name(a).cmp(&checksum_line_name(b)));
    std::fs::write(&checksums_path, lines.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", checksums_path.display()))?;
    Ok(archive_path)
}

/// The file a `sha256sum` line names (`HEX  NAME`, or `HEX *NAME` in binary mode).
fn checksum_line_name(line: &str) -> Option<&str> {
    let (_, name) = line.split_once(' ')?;
    Some(name.trim_start_matches([' ', '*']))
}

fn check(workspace: &Workspace, archive: Option<&Path>) -> Result<()> {
    let version = workspace.version()?;
    let archive = match archive {
        Some(archive) => archive.to_path_buf(),
        None => {
            dist_dir(workspace).join(format!("{}.tar.gz", release_name(version, &host_target()?)))
        }
    };
    let scratch = std::env::temp_dir().join(format!("mailroom-dist-check-{}", std::process::id()));
    let result = verify(&archive, version, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let verified = result?;
    println!(
        "xtask dist --check: {} ({} bytes)",
        archive.display(),
        verified.size
    );
    println!("  checksum matches {CHECKSUMS}: {}", verified.digest);
    println!(
        "  unpacks into {}/ with all {} expected files",
        verified.top,
        expected_files().len()
    );
    println!("  `{BINARY} --version` prints: {}", verified.version_line);
    Ok(())
}

/// What `verify` established.
#[derive(Debug)]
struct Verified {
    size: u64,
    digest: String,
    top: String,
    version_line: String,
}

/// Checks the archive against the `SHA256SUMS` beside it, unpacks it into `scratch`,
/// checks the files and runs the binary's `--version`.
fn verify(archive: &Path, version: &str, scratch: &Path) -> Result<Verified> {
    let file_name = archive
        .file_name()
        .and_then(|name| name.to_str())
        .with_context(|| format!("{} is not an archive's path", archive.display()))?;
    let Some(top) = file_name.strip_suffix(".tar.gz") else {
        bail!("{} is not a .tar.gz archive", archive.display());
    };
    if !archive.is_file() {
        bail!(
            "{} does not exist; build it with `cargo xtask dist`",
            archive.display()
        );
    }
    let expected_prefix = format!("{BINARY}-{version}-");
    if !top.starts_with(&expected_prefix) {
        bail!(
            "{file_name} is not a {BINARY} {version} archive (its name should start with {expected_prefix})"
        );
    }
    let checksums_path = archive.with_file_name(CHECKSUMS);
    let checksums = std::fs::read_to_string(&checksums_path).with_context(|| {
        format!(
            "cannot read {}: the checksum file must sit beside the archive",
            checksums_path.display()
        )
    })?;
    let Some(recorded) = checksums
        .lines()
        .find(|line| checksum_line_name(line) == Some(file_name))
        .and_then(|line| line.split_whitespace().next())
    else {
        bail!("{} has no line for {file_name}", checksums_path.display());
    };
    let digest = sha256_of(archive)?;
    if !recorded.eq_ignore_ascii_case(&digest) {
        bail!(
            "{file_name}: SHA-256 is {digest}, but {} records {recorded}",
            checksums_path.display()
        );
    }

    if scratch.exists() {
        std::fs::remove_dir_all(scratch)?;
    }
    std::fs::create_dir_all(scratch)?;
    let file = File::open(archive)?;
    // `unpack` refuses entries that would land outside `scratch`.
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(scratch)
        .with_context(|| format!("{file_name} does not unpack"))?;
    let unpacked = scratch.join(top);
    let missing: Vec<&str> = expected_files()
        .into_iter()
        .filter(|path| !unpacked.join(path).is_file())
        .collect();
    if !missing.is_empty() {
        bail!("{file_name} lacks {}", missing.join(", "));
    }
    for path in expected_files() {
        if std::fs::metadata(unpacked.join(path))?.len() == 0 {
            bail!("{file_name}: {top}/{path} is empty");
        }
    }
    let man = std::fs::read_to_string(unpacked.join(MAN_PAGE))?;
    if !man.contains(".TH ") {
        bail!("{file_name}: {top}/{MAN_PAGE} is not a roff manual page (no .TH)");
    }
    let binary = unpacked.join(BINARY);
    let output = run_binary(&binary, &["--version"])?;
    let version_line = String::from_utf8_lossy(&output).trim().to_owned();
    let expected = format!("{BINARY} {version}");
    let matches = version_line
        .strip_prefix(&expected)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '));
    if !matches {
        bail!(
            "{file_name}: `{BINARY} --version` printed {version_line:?}, not the workspace version ({expected})"
        );
    }
    Ok(Verified {
        size: std::fs::metadata(archive)?.len(),
        digest,
        top: top.to_owned(),
        version_line,
    })
}

/// Runs the binary with `args` and returns its standard output; fails with its stderr.
fn run_binary(binary: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let output = Command::new(binary)
        .args(args)
        .env_remove("MAILROOM_DATABASE_URL")
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            binary.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

/// The host's target triple, from `rustc -vV`.
fn host_target() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(&rustc)
        .arg("-vV")
        .output()
        .with_context(|| format!("cannot run {rustc} -vV"))?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .with_context(|| format!("`{rustc} -vV` names no host"))
}

/// The files' time in the archive: `SOURCE_DATE_EPOCH` when set (reproducible builds),
/// else now.
fn modification_time() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs())
        })
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files of a release whose "binary" is a shell script printing `version_line`.
    fn release_files(version_line: &str) -> Vec<ArchiveFile> {
        expected_files()
            .into_iter()
            .map(|path| ArchiveFile {
                path: path.to_owned(),
                contents: match path {
                    BINARY => format!("#!/bin/sh\necho '{version_line}'\n").into_bytes(),
                    MAN_PAGE => b".TH mailroom 1\n".to_vec(),
                    _ => format!("{path}\n").into_bytes(),
                },
                executable: path == BINARY,
            })
            .collect()
    }

    // The stand-in binary is a shell script.
    #[cfg(unix)]
    #[test]
    fn a_written_archive_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let name = release_name("0.2.0", "x86_64-unknown-linux-gnu");
        let files = release_files("mailroom 0.2.0 (commit 0123456789ab)");
        let archive = write_archive(dir.path(), &name, &files, 0).unwrap();
        assert_eq!(
            archive.file_name().unwrap(),
            "mailroom-0.2.0-x86_64-unknown-linux-gnu.tar.gz"
        );
        let verified = verify(&archive, "0.2.0", &dir.path().join("scratch")).unwrap();
        assert_eq!(
            verified.version_line,
            "mailroom 0.2.0 (commit 0123456789ab)"
        );
        let sums = std::fs::read_to_string(dir.path().join(CHECKSUMS)).unwrap();
        assert_eq!(
            sums,
            format!(
                "{}  mailroom-0.2.0-x86_64-unknown-linux-gnu.tar.gz\n",
                verified.digest
            )
        );

        // A rebuild replaces its own line and keeps the others.
        write_archive(dir.path(), &release_name("0.1.0", "t"), &files, 0).unwrap();
        write_archive(dir.path(), &name, &files, 0).unwrap();
        let sums = std::fs::read_to_string(dir.path().join(CHECKSUMS)).unwrap();
        assert_eq!(sums.lines().count(), 2, "{sums}");
    }

    #[test]
    fn a_tampered_archive_fails_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let name = release_name("0.2.0", "t");
        let archive =
            write_archive(dir.path(), &name, &release_files("mailroom 0.2.0"), 0).unwrap();
        let mut bytes = std::fs::read(&archive).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&archive, bytes).unwrap();
        let error = verify(&archive, "0.2.0", &dir.path().join("scratch")).unwrap_err();
        assert!(error.to_string().contains("SHA-256 is"), "{error:#}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = release_files("mailroom 0.2.0");
        files.retain(|file| file.path != MAN_PAGE && file.path != "LICENSE-MIT");
        let archive = write_archive(dir.path(), &release_name("0.2.0", "t"), &files, 0).unwrap();
        let error = verify(&archive, "0.2.0", &dir.path().join("scratch")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "mailroom-0.2.0-t.tar.gz lacks LICENSE-MIT, man/mailroom.1"
        );
    }

    // The stand-in binary is a shell script.
    #[cfg(unix)]
    #[test]
    fn a_binary_of_another_version_fails() {
        let dir = tempfile::tempdir().unwrap();
        let archive = write_archive(
            dir.path(),
            &release_name("0.2.0", "t"),
            &release_files("mailroom 0.2.01"),
            0,
        )
        .unwrap();
        let error = verify(&archive, "0.2.0", &dir.path().join("scratch")).unwrap_err();
        assert!(
            error.to_string().contains("not the workspace version"),
            "{error:#}"
        );
        let error = verify(&archive, "0.3.0", &dir.path().join("scratch")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("is not a mailroom 0.3.0 archive"),
            "{error:#}"
        );
    }
}
