//! The README's code blocks, taken as written for the tests that run them
//! (`api/readme.rs`, `migration/readme.rs`): a block after a heading or a
//! phrase, and exact replacements that fail loudly when the README changed.

/// The repository's README.md.
pub fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .unwrap_or_else(|err| panic!("README.md: {err}"))
}

/// The first `sh` block after `marker` in `readme`, without its fences.
pub fn shell_block(readme: &str, marker: &str) -> String {
    let after = readme
        .find(marker)
        .unwrap_or_else(|| panic!("the README has no {marker:?}"));
    let start = readme[after..]
        .find("```sh\n")
        .map(|i| after + i + "```sh\n".len())
        .unwrap_or_else(|| panic!("no sh block after {marker:?}"));
    let end = readme[start..]
        .find("```")
        .map(|i| start + i)
        .unwrap_or_else(|| panic!("the sh block after {marker:?} never ends"));
    readme[start..end].to_owned()
}

/// `block` with every `from` replaced by `to`; panics when `from` is not
/// in it (the README changed: the test must follow it, not run something
/// else).
pub fn replaced(block: &str, from: &str, to: &str) -> String {
    assert!(
        block.contains(from),
        "the README's block no longer has {from:?}:\n{block}"
    );
    block.replace(from, to)
}
