//! Generated container names (`adjective_name`, as Docker makes them) and the rule a given
//! name must follow.

use rand::Rng;

const ADJECTIVES: &[&str] = &[
    "agile", "amber", "ancient", "bold", "brave", "bright", "calm", "careful", "cheerful",
    "clever", "cosmic", "crisp", "curious", "daring", "deep", "eager", "early", "elegant",
    "fearless", "fluent", "frosty", "gentle", "glad", "golden", "graceful", "happy", "hardy",
    "honest", "humble", "jolly", "keen", "kind", "lively", "lucid", "lucky", "mellow", "merry",
    "modest", "nimble", "noble", "patient", "placid", "polite", "proud", "quick", "quiet", "rapid",
    "rustic", "serene", "sharp", "shiny", "silent", "steady", "sturdy", "swift", "tender", "tidy",
    "upbeat", "vivid", "wise", "witty", "zealous",
];

const NAMES: &[&str] = &[
    "agnesi",
    "babbage",
    "banach",
    "bell",
    "bohr",
    "boole",
    "cantor",
    "cauchy",
    "curie",
    "darwin",
    "dijkstra",
    "dirac",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "gauss",
    "germain",
    "goedel",
    "hamilton",
    "hopper",
    "hubble",
    "huygens",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "kovalevskaya",
    "lamarr",
    "laplace",
    "leibniz",
    "lovelace",
    "maxwell",
    "meitner",
    "mendel",
    "napier",
    "newton",
    "noether",
    "ohm",
    "pascal",
    "pasteur",
    "planck",
    "poincare",
    "ramanujan",
    "riemann",
    "ritchie",
    "shannon",
    "somerville",
    "tesla",
    "thompson",
    "turing",
    "volta",
    "wiles",
    "wozniak",
    "yalow",
    "zuse",
];

/// A random `adjective_name`; `retry` > 0 appends a digit, as Docker does after a clash.
pub fn generate(retry: u32) -> String {
    let mut rng = rand::rng();
    let a = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
    let n = NAMES[rng.random_range(0..NAMES.len())];
    if retry > 0 {
        format!("{a}_{n}{}", rng.random_range(0..10))
    } else {
        format!("{a}_{n}")
    }
}

/// Whether `name` (without its leading `/`) is a valid container name:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        for i in 0..50 {
            let n = super::generate(i % 2);
            assert!(super::valid(&n), "{n}");
        }
        assert!(super::valid("web-1.a_b"));
        for bad in ["", "a", "-x", "_x", "a/b", "a b", "ü1"] {
            assert!(!super::valid(bad), "{bad}");
        }
    }
}
