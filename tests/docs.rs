//! Every reference to a design document resolves, and stays resolvable.
//!
//! Comments cite the documents in `docs/` by file and section: a file name
//! such as `controller.md` under `docs/`, optionally followed by `§N` (or
//! `§N and §M`, also across a comment line break). This test scans `src/`,
//! `tests/`, `benches/`, `hack/`, `docs/` and `README.md` and fails, naming
//! file:line, when a cited file does not exist or has no heading `## N.`,
//! and when a `§N` stands alone outside `docs/` (it could mean any
//! document). Inside a document a bare `§N` means its own section N.
//!
//! It also fails on the older citation form, a "spec" document that was
//! never in the repository: comments must cite `docs/` instead.
//!
//! No cluster is needed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

/// What is scanned, relative to the repository root.
const SCANNED: &[&str] = &["src", "tests", "benches", "hack", "docs", "README.md"];

/// `docs/NAME.md`, as cited.
static DOC_REF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"docs/([A-Za-z0-9_.-]+?)\.md").unwrap());
/// Whitespace and comment markers a citation may be broken across.
const FILLER: &str = r"(?:\s|//[/!]?|#)*";
/// The first section right after a file, e.g. ` §3` or `\n//! §2`.
static FIRST_SECTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"\A{FILLER}§(\d+)")).unwrap());
/// A further section of the same file: `, §4`, ` and §10`, ` or §2`.
static MORE_SECTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"\A{FILLER}(?:,|and|or){FILLER}§(\d+)")).unwrap());
/// Any section sign with its number.
static SECTION_SIGN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"§(\d*)").unwrap());
/// A document's section headings.
static HEADING: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?m)^## (\d+)\.").unwrap());
/// The old citations of a document outside the repository.
static STALE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\bspec\s+sections?\b|\b(?:of|in|per)\s+the\s+spec\b|\bthe\s+spec's|\bthe\s+spec\s+says\b|shared/spec",
    )
    .unwrap()
});

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Section numbers of every document in `docs/`, by file name.
type Docs = BTreeMap<String, BTreeSet<u32>>;

fn load_docs(root: &Path) -> Docs {
    let mut docs = Docs::new();
    let Ok(entries) = fs::read_dir(root.join("docs")) else {
        return docs;
    };
    for entry in entries {
        let path = entry.expect("listing docs/").path();
        if path.extension().is_some_and(|e| e == "md") {
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            docs.insert(name, sections(&text));
        }
    }
    docs
}

fn sections(text: &str) -> BTreeSet<u32> {
    HEADING
        .captures_iter(text)
        .map(|c| c[1].parse().expect("a heading number fits u32"))
        .collect()
}

/// Every text file under `path`, in a stable order. Build output, VCS data
/// and files that are not UTF-8 are skipped.
fn text_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if matches!(name.as_deref(), Some("target" | ".git")) {
            return;
        }
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .unwrap_or_else(|e| panic!("listing {}: {e}", path.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for entry in entries {
            text_files(&entry, out);
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// The comment text of a source file, line by line (the whole line for
/// Markdown), joined with spaces so a phrase broken across comment lines is
/// found; with each part's line number.
fn comment_stream(label: &str, text: &str) -> (String, Vec<(usize, usize)>) {
    let markdown = label.ends_with(".md");
    let rust = label.ends_with(".rs");
    let mut stream = String::new();
    let mut starts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let comment = if markdown {
            Some(line)
        } else if rust {
            line.find("//")
                .map(|at| line[at..].trim_start_matches('/').trim_start_matches('!'))
        } else {
            line.find('#').map(|at| line[at..].trim_start_matches('#'))
        };
        if let Some(c) = comment {
            starts.push((stream.len(), i + 1));
            stream.push_str(c.trim());
            stream.push(' ');
        }
    }
    (stream, starts)
}

/// Everything wrong with the citations in one file's text. `label` is the
/// path shown in messages; `own_doc` is the document's own file name when
/// the file is itself in `docs/`.
fn problems_in(label: &str, text: &str, own_doc: Option<&str>, docs: &Docs) -> Vec<String> {
    let mut problems = Vec::new();
    // Section signs that belong to a file citation.
    let mut cited_signs = BTreeSet::new();

    for m in DOC_REF.captures_iter(text) {
        let whole = m.get(0).unwrap();
        let file = format!("{}.md", &m[1]);
        let at = format!("{label}:{}", line_of(text, whole.start()));
        let known = docs.get(&file);
        if known.is_none() {
            problems.push(format!("{at}: cites docs/{file}, which does not exist"));
        }
        let mut rest_at = whole.end();
        let mut pattern: &Regex = &FIRST_SECTION;
        while let Some(c) = pattern.captures(&text[rest_at..]) {
            let number = c.get(1).unwrap();
            let sign_at = rest_at + number.start() - '§'.len_utf8();
            cited_signs.insert(sign_at);
            let n: u32 = number.as_str().parse().expect("a section number fits u32");
            // A missing file was reported once; its sections are not.
            if known.is_some_and(|k| !k.contains(&n)) {
                problems.push(format!(
                    "{label}:{}: cites docs/{file} §{n}, which has no heading `## {n}.`",
                    line_of(text, sign_at)
                ));
            }
            rest_at += c.get(0).unwrap().end();
            pattern = &MORE_SECTION;
        }
    }

    for m in SECTION_SIGN.captures_iter(text) {
        let sign = m.get(0).unwrap();
        if cited_signs.contains(&sign.start()) {
            continue;
        }
        let at = format!("{label}:{}", line_of(text, sign.start()));
        let number = m[1].parse::<u32>().ok();
        match (own_doc, number) {
            (Some(doc), Some(n)) => {
                if !docs.get(doc).is_some_and(|s| s.contains(&n)) {
                    problems.push(format!(
                        "{at}: refers to §{n}, but {doc} has no heading `## {n}.`"
                    ));
                }
            }
            // A number-less section sign is prose, not a citation.
            (_, None) => {}
            (None, Some(n)) => problems.push(format!(
                "{at}: §{n} without a document; cite it as docs/FILE.md §{n}"
            )),
        }
    }

    let (stream, starts) = comment_stream(label, text);
    for m in STALE.find_iter(&stream) {
        let line = starts
            .iter()
            .take_while(|(offset, _)| *offset <= m.start())
            .last()
            .map_or(0, |(_, line)| *line);
        problems.push(format!(
            "{label}:{line}: cites {:?}, a document that is not in the repository; cite docs/ instead",
            m.as_str()
        ));
    }
    problems
}

#[test]
fn every_reference_to_docs_resolves() {
    let root = repo_root();
    let docs = load_docs(&root);
    assert!(
        docs.contains_key("controller.md") && docs.contains_key("scheduler.md"),
        "docs/controller.md and docs/scheduler.md must exist; found {:?}",
        docs.keys().collect::<Vec<_>>()
    );

    let mut files = Vec::new();
    for entry in SCANNED {
        text_files(&root.join(entry), &mut files);
    }
    let mut problems = Vec::new();
    let mut citations = 0;
    for path in &files {
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        let label = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // This file's own fixtures are broken on purpose.
        if label == "tests/docs.rs" {
            continue;
        }
        let own_doc = label
            .strip_prefix("docs/")
            .filter(|rest| !rest.contains('/'));
        if own_doc.is_none() {
            citations += DOC_REF.find_iter(&text).count();
        }
        problems.extend(problems_in(&label, &text, own_doc, &docs));
    }

    assert!(
        problems.is_empty(),
        "{} unresolvable citation(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The scan itself must have seen the code's citations; finding none would
    // mean it looked in the wrong place, not that all is well.
    assert!(
        citations >= 20,
        "only {citations} citations of docs/ found in {} files; the scan is broken",
        files.len()
    );
}

/// The checker on made-up text, so each rule is known to fire.
#[test]
fn the_checker_reports_each_kind_of_broken_citation() {
    let docs: Docs = [("a.md".to_string(), BTreeSet::from([1, 2]))].into();
    let ok = "// docs/a.md §1 and §2; see docs/a.md\n/// (docs/a.md\n/// §2), docs/a.md §1, §2\n";
    assert_eq!(problems_in("x.rs", ok, None, &docs), Vec::<String>::new());

    let broken =
        "// fine\n// docs/b.md §1\n// docs/a.md §3\n// docs/a.md §1 and\n// §9\n// §2 alone\n";
    assert_eq!(
        problems_in("x.rs", broken, None, &docs),
        [
            "x.rs:2: cites docs/b.md, which does not exist",
            "x.rs:3: cites docs/a.md §3, which has no heading `## 3.`",
            "x.rs:5: cites docs/a.md §9, which has no heading `## 9.`",
            "x.rs:6: §2 without a document; cite it as docs/FILE.md §2",
        ]
    );

    // Inside a document, a bare section sign is one of its own sections.
    assert_eq!(
        problems_in("docs/a.md", "as §2 says; not §4", Some("a.md"), &docs),
        ["docs/a.md:1: refers to §4, but a.md has no heading `## 4.`"]
    );

    // The old citation form, also broken across comment lines; the object's
    // own `spec` is not a citation.
    let old = concat!(
        "// see spec section 4\n",
        "//! time (section 2 of\n",
        "//! the spec) plus\n",
        "// copies the template into the spec\n",
        "let s = \"in the spec\"; // not a comment hit\n",
    );
    assert_eq!(
        problems_in("x.rs", old, None, &docs),
        [
            "x.rs:1: cites \"spec section\", a document that is not in the repository; cite docs/ instead",
            "x.rs:2: cites \"of the spec\", a document that is not in the repository; cite docs/ instead",
        ]
    );
}
