//! URL pieces shared by registry requests and the Engine API client.

/// Percent-encodes a query value or path segment (all but unreserved characters).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_characters_are_encoded() {
        assert_eq!(super::escape("a b/c:d~e"), "a%20b%2Fc%3Ad~e");
        assert_eq!(super::escape("é"), "%C3%A9");
    }
}
