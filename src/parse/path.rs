//! Field paths: a top-level key, or a dotted path into nested objects (`properties.item.color`),
//! and the tree of configured names that both parse paths walk to find them in one pass.
//!
//! Why a tree: real payloads nest their properties, and a filter or dimension on
//! `properties.color` must not cost a second parse of the line. Each configured path gets a slot
//! in the per-line field array; while the scanner (or simd-json's tape) walks an object, a member
//! whose name starts a configured path is descended into at once.

use super::signature;

/// A path of object keys, outermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    /// `a.b.c`: keys separated by dots; `\.` is a dot inside a key. A backslash before anything
    /// else, or an empty key, is refused (it is almost certainly a typo).
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let mut keys = vec![String::new()];
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('.') => keys.last_mut().map_or((), |k| k.push('.')),
                    _ => {
                        return Err(format!(
                            "`{text}`: a backslash may only escape a dot (`\\.` is a dot inside a key)"
                        ));
                    }
                },
                '.' => keys.push(String::new()),
                c => keys.last_mut().map_or((), |k| k.push(c)),
            }
        }
        if keys.iter().any(String::is_empty) {
            return Err(format!(
                "`{text}` is not a field path: keys must not be empty (write `a.b` for key `b` inside object `a`)"
            ));
        }
        Ok(FieldPath(keys))
    }

    /// A path of one key taken literally (the `[fields]` names, which are never split).
    pub fn literal(name: &str) -> FieldPath {
        FieldPath(vec![name.to_string()])
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self.0.iter().map(|k| k.replace('.', "\\.")).collect();
        f.write_str(&keys.join("."))
    }
}

/// The configured names of one object level.
#[derive(Debug, Clone, Default)]
pub(crate) struct Level {
    names: Vec<Box<[u8]>>,
    sigs: Vec<u64>,
    /// The slot a member's own value goes to.
    slots: Vec<usize>,
    /// The configured names inside a member's object, for paths that go deeper.
    children: Vec<Option<Level>>,
    /// Every slot at this level and below: cleared when a repeated member replaces an earlier
    /// one (the last occurrence of a key wins, nested values included).
    below: Vec<usize>,
}

impl Level {
    /// The member's index at this level, if its name is configured.
    #[inline]
    pub(crate) fn find(&self, key: &[u8]) -> Option<usize> {
        let sig = signature(key);
        self.sigs
            .iter()
            .zip(&self.names)
            .position(|(&s, name)| s == sig && **name == *key)
    }

    #[inline]
    pub(crate) fn slot(&self, i: usize) -> usize {
        self.slots[i]
    }

    #[inline]
    pub(crate) fn child(&self, i: usize) -> Option<&Level> {
        self.children[i].as_ref()
    }

    /// Every slot at this level and below.
    #[inline]
    pub(crate) fn below(&self) -> &[usize] {
        &self.below
    }
}

/// Hands out one slot per distinct configured path and builds the [`Level`] tree.
#[derive(Debug, Default)]
pub(crate) struct Paths {
    root: Level,
    paths: Vec<FieldPath>,
}

impl Paths {
    /// The slot of `path` (registered on first use). Every key along a path gets a slot of its
    /// own too, so the outer values can be type-checked like any other field.
    pub(crate) fn slot(&mut self, path: &FieldPath) -> usize {
        if let Some(i) = self.paths.iter().position(|p| p == path) {
            return i;
        }
        let slots: Vec<usize> = (0..path.0.len())
            .map(|depth| {
                let prefix = FieldPath(path.0[..=depth].to_vec());
                match self.paths.iter().position(|p| *p == prefix) {
                    Some(s) => s,
                    None => {
                        self.paths.push(prefix);
                        self.paths.len() - 1
                    }
                }
            })
            .collect();
        let mut level = &mut self.root;
        for (depth, key) in path.0.iter().enumerate() {
            for &s in &slots[depth..] {
                if !level.below.contains(&s) {
                    level.below.push(s);
                }
            }
            let i = match level.find(key.as_bytes()) {
                Some(i) => i,
                None => {
                    level.names.push(key.as_bytes().into());
                    level.sigs.push(signature(key.as_bytes()));
                    level.slots.push(slots[depth]);
                    level.children.push(None);
                    level.names.len() - 1
                }
            };
            if depth + 1 < path.0.len() {
                level = level.children[i].get_or_insert_with(Level::default);
            }
        }
        slots[slots.len() - 1]
    }

    pub(crate) fn len(&self) -> usize {
        self.paths.len()
    }

    pub(crate) fn root(&self) -> &Level {
        &self.root
    }

    /// The path behind a slot, for messages.
    pub(crate) fn name(&self, slot: usize) -> String {
        self.paths
            .get(slot)
            .map_or_else(String::new, |p| p.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dotted_paths_and_escaped_dots() {
        assert_eq!(FieldPath::parse("a").unwrap().0, vec!["a"]);
        assert_eq!(FieldPath::parse("a.b.c").unwrap().0, vec!["a", "b", "c"]);
        assert_eq!(FieldPath::parse(r"a\.b.c").unwrap().0, vec!["a.b", "c"]);
        assert!(FieldPath::parse("a..b").is_err());
        assert!(FieldPath::parse(".a").is_err());
        assert!(FieldPath::parse(r"a\b").is_err());
        assert_eq!(FieldPath::parse(r"a\.b.c").unwrap().to_string(), r"a\.b.c");
    }

    #[test]
    fn slots_are_shared_and_prefixes_get_their_own() {
        let mut p = Paths::default();
        let u = p.slot(&FieldPath::literal("user"));
        let c = p.slot(&FieldPath::parse("props.color").unwrap());
        let q = p.slot(&FieldPath::parse("props.qty").unwrap());
        assert_eq!(p.slot(&FieldPath::parse("props.color").unwrap()), c);
        let props = p.slot(&FieldPath::literal("props"));
        assert_eq!(p.len(), 4);
        assert_ne!(u, c);
        let root = p.root();
        let i = root.find(b"props").unwrap();
        assert_eq!(root.slot(i), props);
        let child = root.child(i).unwrap();
        assert_eq!(child.slot(child.find(b"qty").unwrap()), q);
        assert!(child.below().contains(&c) && child.below().contains(&q));
        assert!(!child.below().contains(&props));
    }
}
