//! Text rules shared by everything users write or name: characters that hide or reorder text
//! (bidi controls, zero-width and other invisible characters), and text that is blank once
//! they are set aside, so a message cannot look empty yet be stored, or reverse what follows.

/// Characters that reorder or hide text: bidi embeddings, overrides, isolates and marks,
/// zero-width and joiner characters, and the fillers and blanks that render as nothing.
pub fn is_invisible_or_reordering(c: char) -> bool {
    matches!(c,
        '\u{00ad}' // soft hyphen
        | '\u{034f}' // combining grapheme joiner
        | '\u{061c}' // Arabic letter mark
        | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}' // Hangul fillers
        | '\u{180e}' // Mongolian vowel separator
        | '\u{200b}'..='\u{200f}' // zero-width space, joiners, LRM, RLM
        | '\u{202a}'..='\u{202e}' // embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}' // isolates
        | '\u{2800}' // braille blank
        | '\u{feff}' // zero-width no-break space
    )
}

/// Whether `text` shows nothing: only white space, control and invisible characters.
pub fn is_blank(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_whitespace() || c.is_control() || is_invisible_or_reordering(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_text_is_blank() {
        assert!(is_blank(""));
        assert!(is_blank(
            " \t\n\u{200b}\u{202e}\u{2066}\u{feff}\u{3164}\u{2800}"
        ));
        assert!(!is_blank("\u{202e}hello"));
        assert!(!is_blank("👍"));
        assert!(!is_blank("مرحبا"));
    }
}
