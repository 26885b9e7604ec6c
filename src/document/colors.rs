//! Colour assignment: a session that did not choose a colour gets the
//! least-used colour of [`PALETTE`] among the document's current sessions,
//! so that two or three people in a new document never share one.
//!
//! Pure: it looks only at the colours it is given. Ties go to the colour
//! that comes first in the palette, so the same sessions always give the
//! same answer (the first person in a document gets the first colour, the
//! second the second, …; a colour freed by someone who left is reused first).

/// The colours handed out, in the order ties are broken. Distinct hues that
/// read well as a caret and as a selection tint on light and dark themes.
pub const PALETTE: [&str; 10] = [
    "#e5484d", "#0090ff", "#30a46c", "#f76b15", "#8e4ec6", "#12a594", "#d6409f", "#d6a100",
    "#3e63dd", "#6e56cf",
];

/// The colour of `palette` used by the fewest of `in_use` (compared without
/// regard to case; colours not in the palette are ignored). Ties: the first
/// in palette order. An empty palette gives an empty string.
pub fn least_used<'p, 'u>(
    palette: &[&'p str],
    in_use: impl IntoIterator<Item = &'u str>,
) -> &'p str {
    let mut counts = vec![0usize; palette.len()];
    for color in in_use {
        if let Some(i) = palette.iter().position(|p| p.eq_ignore_ascii_case(color)) {
            counts[i] += 1;
        }
    }
    // `min_by_key` returns the first of equal minima: palette order breaks ties.
    counts
        .iter()
        .enumerate()
        .min_by_key(|(_, n)| **n)
        .and_then(|(i, _)| palette.get(i).copied())
        .unwrap_or("")
}

/// The colour for a new session of a document whose other sessions use
/// `in_use`: [`least_used`] of [`PALETTE`].
pub fn assign<'u>(in_use: impl IntoIterator<Item = &'u str>) -> String {
    least_used(&PALETTE, in_use).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sessions_get_distinct_colours_in_palette_order() {
        let mut taken: Vec<String> = Vec::new();
        for expected in PALETTE {
            let c = assign(taken.iter().map(String::as_str));
            assert_eq!(c, expected);
            taken.push(c);
        }
        // All used once: the next round starts again at the first.
        assert_eq!(assign(taken.iter().map(String::as_str)), PALETTE[0]);
    }

    #[test]
    fn a_freed_colour_is_reused_first() {
        let taken = [PALETTE[0], PALETTE[2], PALETTE[3]];
        assert_eq!(assign(taken), PALETTE[1]);
    }

    #[test]
    fn least_used_counts_and_ignores_case_and_foreign_colours() {
        let palette = ["#aaaaaa", "#bbbbbb", "#cccccc"];
        let in_use = [
            "#AAAAAA", "#aaaaaa", "#bbbbbb", "#cccccc", "#123456", "#123456",
        ];
        // a: 2, b: 1, c: 1 -> b (first of the tie), whatever order they came in.
        assert_eq!(least_used(&palette, in_use), "#bbbbbb");
        let mut reversed = in_use;
        reversed.reverse();
        assert_eq!(least_used(&palette, reversed), "#bbbbbb");
    }

    #[test]
    fn chosen_colours_of_others_count_against_the_palette() {
        // Someone chose the first palette colour themselves: a new session avoids it.
        assert_eq!(assign(["#E5484D"]), PALETTE[1]);
    }

    #[test]
    fn empty_palette_gives_empty_string() {
        assert_eq!(least_used(&[], ["#aaaaaa"]), "");
    }
}
