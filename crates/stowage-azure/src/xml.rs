//! The few XML documents the Blob service answers with (blob listings,
//! block lists, errors), read into a small element tree with `xmlparser`'s
//! tokenizer. Entities and character references are decoded; comments,
//! declarations and processing instructions are skipped.

use xmlparser::{ElementEnd, Token, Tokenizer};

/// An element: its name (without prefix), attributes, child elements and
/// text (the concatenation of its own text and CDATA pieces).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Element {
    /// The local name.
    pub(crate) name: String,
    /// Attributes, decoded.
    pub(crate) attributes: Vec<(String, String)>,
    /// Child elements, in order.
    pub(crate) children: Vec<Element>,
    /// Text directly inside it, decoded.
    pub(crate) text: String,
}

impl Element {
    /// The first child named `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub(crate) fn children_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child named `name`.
    pub(crate) fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// The value of attribute `name`.
    pub(crate) fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a document into its root element.
///
/// # Errors
/// A message saying what is wrong (not well-formed, no root element).
pub(crate) fn parse(text: &str) -> Result<Element, String> {
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    for token in Tokenizer::from(text) {
        let token = token.map_err(|e| format!("not well-formed XML: {e}"))?;
        match token {
            Token::ElementStart { local, .. } => stack.push(Element {
                name: local.as_str().to_string(),
                ..Element::default()
            }),
            Token::Attribute { local, value, .. } => {
                let element = stack.last_mut().ok_or("an attribute outside an element")?;
                element
                    .attributes
                    .push((local.as_str().to_string(), unescape(value.as_str())?));
            }
            Token::ElementEnd { end, .. } => match end {
                ElementEnd::Open => {}
                ElementEnd::Empty | ElementEnd::Close(..) => {
                    let done = stack.pop().ok_or("an end tag without a start")?;
                    if let ElementEnd::Close(_, local) = end {
                        if local.as_str() != done.name {
                            return Err(format!("</{}> closes <{}>", local.as_str(), done.name));
                        }
                    }
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => root = Some(done),
                    }
                }
            },
            Token::Text { text } => {
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&unescape(text.as_str())?);
                }
            }
            Token::Cdata { text, .. } => {
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(text.as_str());
                }
            }
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    root.ok_or_else(|| "no root element".to_string())
}

/// Decodes the five entities and character references.
fn unescape(text: &str) -> Result<String, String> {
    if !text.contains('&') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after
            .find(';')
            .ok_or_else(|| format!("an unterminated entity in {text:?}"))?;
        let entity = &after[..end];
        let decoded = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let number = if let Some(hex) = entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    None
                };
                number
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("an unknown entity &{entity};"))?
            }
        };
        out.push(decoded);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_and_errors_parse() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="c"><Prefix>r/</Prefix><Marker/><MaxResults>5000</MaxResults><Blobs><Blob><Name>r/amp/a&amp;b#c?d</Name><Properties><Last-Modified>Sun, 06 Dec 2026 20:37:44 GMT</Last-Modified><Etag>0x1F33C0D5FF789E0</Etag><Content-Length>11</Content-Length></Properties></Blob><Blob><Name Encoded="true">r/%01</Name><Properties/></Blob></Blobs><NextMarker>r/x&#x20;y</NextMarker></EnumerationResults>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "EnumerationResults");
        assert_eq!(root.attribute("ContainerName"), Some("c"));
        let blobs: Vec<&Element> = root
            .child("Blobs")
            .unwrap()
            .children_named("Blob")
            .collect();
        assert_eq!(blobs.len(), 2);
        assert_eq!(blobs[0].text_of("Name"), Some("r/amp/a&b#c?d"));
        assert_eq!(
            blobs[0]
                .child("Properties")
                .unwrap()
                .text_of("Content-Length"),
            Some("11")
        );
        assert_eq!(
            blobs[1].child("Name").unwrap().attribute("Encoded"),
            Some("true")
        );
        assert_eq!(root.text_of("NextMarker"), Some("r/x y"));
        assert_eq!(root.text_of("Marker"), Some(""));

        let error = parse(
            "<?xml version=\"1.0\"?>\n<Error>\n  <Code>ContainerNotFound</Code>\n  \
             <Message>The specified container does not exist.\nRequestId:1</Message>\n</Error>",
        )
        .unwrap();
        assert_eq!(error.text_of("Code"), Some("ContainerNotFound"));
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("<a>").is_err());
        assert!(parse("").is_err());
        assert!(parse("<a>&bogus;</a>").is_err());
        assert_eq!(parse("<a>&#233;&lt;</a>").unwrap().text, "é<");
    }
}
