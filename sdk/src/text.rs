//! Case- and whitespace-insensitive text search for policy graders.

/// Lowercases `text` and collapses every run of whitespace into one space,
/// trimming both ends. `"Call   911"` and `"call\n911"` both become `"call 911"`.
pub fn normalize(text: &str) -> String {
    let mut normalized = NormalizedText::default();
    normalized.push(text);
    normalized.text
}

/// Text normalised with [`normalize`], searchable for normalised phrases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NormalizedText {
    text: String,
}

impl NormalizedText {
    /// Normalises `text`.
    pub fn new(text: &str) -> Self {
        let mut normalized = NormalizedText::default();
        normalized.push(text);
        normalized
    }

    /// Normalises several pieces as if they were joined with spaces.
    pub fn from_parts<'a>(parts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut normalized = NormalizedText::default();
        for part in parts {
            normalized.push(part);
        }
        normalized
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the normalised `phrase` occurs in the text. An empty phrase never matches.
    pub fn contains(&self, phrase: &str) -> bool {
        let phrase = normalize(phrase);
        !phrase.is_empty() && self.text.contains(&phrase)
    }

    /// The phrases (as given) that occur in the text, in the order given, without repeats.
    pub fn find_phrases<'a>(&self, phrases: &'a [String]) -> Vec<&'a str> {
        let mut found: Vec<&str> = Vec::new();
        for phrase in phrases {
            if self.contains(phrase) && !found.contains(&phrase.as_str()) {
                found.push(phrase);
            }
        }
        found
    }

    fn push(&mut self, piece: &str) {
        // A separator between pieces, collapsed like any other whitespace.
        let mut pending_space = !self.text.is_empty();
        self.text.reserve(piece.len() + 1);
        for character in piece.chars() {
            if character.is_whitespace() {
                pending_space = !self.text.is_empty();
                continue;
            }
            if pending_space {
                self.text.push(' ');
                pending_space = false;
            }
            if character.is_ascii() {
                self.text.push(character.to_ascii_lowercase());
            } else {
                self.text.extend(character.to_lowercase());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_collapses_case_and_whitespace() {
        assert_eq!(normalize("  Call\t\n  911  NOW "), "call 911 now");
        assert_eq!(normalize("ÉTÉ"), "été");
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn parts_are_joined_by_one_space() {
        let text = NormalizedText::from_parts(["Please CALL", "911 now", "  "]);
        assert_eq!(text.as_str(), "please call 911 now");
        assert!(text.contains("call 911"));
        assert!(!text.contains("dial 911"));
    }

    #[test]
    fn empty_phrase_never_matches() {
        assert!(!NormalizedText::new("anything").contains("   "));
    }

    #[test]
    fn find_phrases_keeps_order_and_drops_repeats() {
        let text = NormalizedText::new("I'm not a doctor, but call 911.");
        let phrases =
            vec!["Call 911".to_owned(), "guarantee".to_owned(), "I'M NOT A  DOCTOR".to_owned(), "Call 911".to_owned()];
        assert_eq!(text.find_phrases(&phrases), vec!["Call 911", "I'M NOT A  DOCTOR"]);
    }
}
