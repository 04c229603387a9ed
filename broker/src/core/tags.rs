//! Tag expressions: `*` (every message) or tags joined by `||` (`A || B`).

use quiver_proto::message::TAG_BYTES_MAX;

use crate::store::log::reader::TagMatch;

/// Most tags in one expression.
pub const EXPR_TAGS_MAX: usize = 64;

/// A parsed tag expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagExpr {
    /// `*`: every message, tagged or not.
    All,
    /// Messages whose tag is one of these (sorted, without repeats).
    AnyOf(Vec<String>),
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tag expression {expr:?}: {reason}; write `*` or tags joined by `||`, e.g. `paid || refunded`"
)]
pub struct TagExprError {
    expr: String,
    reason: String,
}

impl TagExpr {
    /// Parses `*`, `A`, `A || B`; whitespace around tags is ignored.
    pub fn parse(expr: &str) -> Result<Self, TagExprError> {
        let refuse = |reason: String| TagExprError {
            expr: expr.to_owned(),
            reason,
        };
        let trimmed = expr.trim();
        if trimmed == "*" || trimmed.is_empty() {
            return Ok(TagExpr::All);
        }
        let mut tags = Vec::new();
        for tag in trimmed.split("||").map(str::trim) {
            if tag.is_empty() {
                return Err(refuse("an empty tag".into()));
            }
            if tag == "*" {
                return Err(refuse("`*` cannot be combined with tags".into()));
            }
            if tag.len() > TAG_BYTES_MAX || tag.contains('|') {
                return Err(refuse(format!(
                    "tag {tag:?} is not a valid tag (at most {TAG_BYTES_MAX} bytes, no `|`)"
                )));
            }
            tags.push(tag.to_owned());
        }
        tags.sort();
        tags.dedup();
        if tags.len() > EXPR_TAGS_MAX {
            return Err(refuse(format!("more than {EXPR_TAGS_MAX} tags")));
        }
        Ok(TagExpr::AnyOf(tags))
    }

    /// The store's matcher, `None` for `*`.
    pub fn matcher(&self) -> Option<TagMatch> {
        match self {
            TagExpr::All => None,
            TagExpr::AnyOf(tags) => Some(TagMatch::new(tags.clone())),
        }
    }
}

impl std::fmt::Display for TagExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TagExpr::All => f.write_str("*"),
            TagExpr::AnyOf(tags) => f.write_str(&tags.join(" || ")),
        }
    }
}
