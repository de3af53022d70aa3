//! Just enough of RFC 8288 (`Link` headers) to find a page's `next` and `prev` links.

/// The target of the first link whose `rel` includes `rel` (ignoring ASCII case), among the
/// values of every `Link` header of a response. Targets are returned as written, for the caller
/// to resolve.
pub(crate) fn find<'a>(values: impl IntoIterator<Item = &'a str>, rel: &str) -> Option<&'a str> {
    values
        .into_iter()
        .flat_map(links)
        .find(|link| link.rels.split_ascii_whitespace().any(|r| r.eq_ignore_ascii_case(rel)))
        .map(|link| link.target)
}

struct Link<'a> {
    target: &'a str,
    /// The first `rel` parameter's value (later ones are ignored, as the RFC says).
    rels: String,
}

/// The links of one header value: `<target>; param=value; param="quoted", <target>; ...`.
/// Parsing stops at the first malformed link; the links before it are kept.
fn links(value: &str) -> Vec<Link<'_>> {
    let mut parser = Parser { rest: value };
    let mut links = Vec::new();
    while let Some(link) = parser.link() {
        links.push(link);
        if !parser.eat(',') {
            break;
        }
    }
    links
}

struct Parser<'a> {
    rest: &'a str,
}

impl<'a> Parser<'a> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    /// Consumes `c` (after optional whitespace) if it comes next.
    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn link(&mut self) -> Option<Link<'a>> {
        // Empty list elements (`, ,`) are allowed by the list syntax.
        while self.eat(',') {}
        if !self.eat('<') {
            return None;
        }
        let end = self.rest.find('>')?;
        let target = self.rest[..end].trim();
        self.rest = &self.rest[end + 1..];
        let mut rels = None;
        while self.eat(';') {
            let (name, value) = self.param()?;
            if rels.is_none() && name.eq_ignore_ascii_case("rel") {
                rels = Some(value);
            }
        }
        Some(Link { target, rels: rels.unwrap_or_default() })
    }

    /// `name`, `name=token` or `name="quoted \" string"`.
    fn param(&mut self) -> Option<(&'a str, String)> {
        self.skip_space();
        let name_end = self.rest.find(['=', ';', ',', ' ', '\t']).unwrap_or(self.rest.len());
        let name = &self.rest[..name_end];
        if name.is_empty() {
            return None;
        }
        self.rest = &self.rest[name_end..];
        if !self.eat('=') {
            return Some((name, String::new()));
        }
        self.skip_space();
        if let Some(quoted) = self.rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        self.rest = &quoted[i + 1..];
                        return Some((name, value));
                    }
                    '\\' => value.push(chars.next()?.1),
                    c => value.push(c),
                }
            }
            None // unterminated quoted string
        } else {
            let end = self.rest.find([';', ',']).unwrap_or(self.rest.len());
            let value = self.rest[..end].trim().to_owned();
            self.rest = &self.rest[end..];
            Some((name, value))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn finds_next_and_prev_in_one_header() {
        let header = r#"</tasks/?limit=2&offset=4>; rel="next", </tasks/?limit=2&offset=0>; rel="prev""#;
        assert_eq!(find([header], "next"), Some("/tasks/?limit=2&offset=4"));
        assert_eq!(find([header], "prev"), Some("/tasks/?limit=2&offset=0"));
        assert_eq!(find([header], "last"), None);
    }

    #[test]
    fn reads_every_header_and_every_syntax() {
        let headers = [
            r#"<https://a.example/x>; title="a, b; \"c\""; rel=prev"#,
            r#"<https://a.example/y>;rel="first NEXT""#,
        ];
        assert_eq!(find(headers, "prev"), Some("https://a.example/x"));
        assert_eq!(find(headers, "next"), Some("https://a.example/y"));
        assert_eq!(find(headers, "first"), Some("https://a.example/y"));
    }

    #[test]
    fn only_the_first_rel_counts_and_garbage_is_ignored() {
        assert_eq!(find([r#"<a>; rel="prev"; rel="next""#], "next"), None);
        assert_eq!(find(["not a link"], "next"), None);
        assert_eq!(find([r#"<a>; rel="next", garbage"#], "next"), Some("a"));
        assert_eq!(find([r#"<a>; title="unterminated"#], "next"), None);
        assert_eq!(find([""], "next"), None);
    }
}
