//! The one percent-decoder: IAM returns policy documents URL-encoded
//! (RFC 3986), and the AWS query protocol sends form-encoded bodies.

/// Decodes `%XX` escapes (and, for form bodies, `+` as a space). A `%` not
/// followed by two hex digits is kept as it is.
pub fn percent_decode(s: &str, form: bool) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (decoded, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') if form => out.push(b' '),
            (None, c) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_escapes_and_keeps_stray_percents() {
        assert_eq!(percent_decode("%7B%22a%22%3A1%7D", false), r#"{"a":1}"#);
        assert_eq!(percent_decode("a+b%2", false), "a+b%2");
        assert_eq!(percent_decode("a+b%20c%zz", true), "a b c%zz");
    }
}
