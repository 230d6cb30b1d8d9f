//! Stubs and solutions must expose the same public API. Both are parsed with `syn` and their
//! public items (signatures, public fields, enum variants; never bodies or comments) compared.

use anyhow::{Context, Result};
use quote::ToTokens;
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};
use syn::{Fields, ImplItem, Item, Visibility};

/// The public surface of one source file, one line per item.
pub fn public_items(source: &str) -> Result<BTreeSet<String>> {
    let file = syn::parse_file(source)?;
    let mut items = BTreeSet::new();
    collect(&file.items, "", &mut items);
    Ok(items)
}

fn is_public(visibility: &Visibility) -> bool {
    matches!(visibility, Visibility::Public(_))
}

fn tokens(item: &impl ToTokens) -> String {
    item.to_token_stream().to_string()
}

fn collect(items: &[Item], prefix: &str, out: &mut BTreeSet<String>) {
    for item in items {
        match item {
            Item::Fn(function) if is_public(&function.vis) => {
                out.insert(format!("{prefix}{}", tokens(&function.sig)));
            }
            Item::Struct(structure) if is_public(&structure.vis) => {
                let fields: Vec<String> = match &structure.fields {
                    Fields::Named(named) => named
                        .named
                        .iter()
                        .filter(|field| is_public(&field.vis))
                        .map(|field| {
                            format!(
                                "{}: {}",
                                field
                                    .ident
                                    .as_ref()
                                    .map(ToString::to_string)
                                    .unwrap_or_default(),
                                tokens(&field.ty)
                            )
                        })
                        .collect(),
                    Fields::Unnamed(unnamed) => unnamed
                        .unnamed
                        .iter()
                        .filter(|field| is_public(&field.vis))
                        .map(|field| tokens(&field.ty))
                        .collect(),
                    Fields::Unit => Vec::new(),
                };
                out.insert(format!(
                    "{prefix}struct {}{} {{ {} }}",
                    structure.ident,
                    tokens(&structure.generics),
                    fields.join(", ")
                ));
            }
            Item::Enum(enumeration) if is_public(&enumeration.vis) => {
                let mut enumeration = enumeration.clone();
                enumeration
                    .attrs
                    .retain(|attribute| !attribute.path().is_ident("doc"));
                for variant in &mut enumeration.variants {
                    variant
                        .attrs
                        .retain(|attribute| !attribute.path().is_ident("doc"));
                }
                out.insert(format!("{prefix}{}", tokens(&enumeration)));
            }
            Item::Trait(definition) if is_public(&definition.vis) => {
                let signatures: Vec<String> = definition
                    .items
                    .iter()
                    .filter_map(|item| match item {
                        syn::TraitItem::Fn(function) => Some(tokens(&function.sig)),
                        _ => None,
                    })
                    .collect();
                out.insert(format!(
                    "{prefix}trait {} {{ {} }}",
                    definition.ident,
                    signatures.join("; ")
                ));
            }
            Item::Impl(block) => {
                let header = match &block.trait_ {
                    Some((_, path, _)) => {
                        format!("impl {} for {}", tokens(path), tokens(&block.self_ty))
                    }
                    None => format!("impl {}", tokens(&block.self_ty)),
                };
                for member in &block.items {
                    if let ImplItem::Fn(function) = member {
                        if block.trait_.is_some() || is_public(&function.vis) {
                            out.insert(format!("{prefix}{header} :: {}", tokens(&function.sig)));
                        }
                    }
                }
            }
            Item::Const(constant) if is_public(&constant.vis) => {
                out.insert(format!(
                    "{prefix}const {}: {}",
                    constant.ident,
                    tokens(&constant.ty)
                ));
            }
            Item::Type(alias) if is_public(&alias.vis) => {
                out.insert(format!(
                    "{prefix}type {} = {}",
                    alias.ident,
                    tokens(&alias.ty)
                ));
            }
            Item::Use(import) if is_public(&import.vis) => {
                out.insert(format!("{prefix}{}", tokens(&import.tree)));
            }
            Item::Mod(module) if is_public(&module.vis) => {
                if let Some((_, inner)) = &module.content {
                    collect(inner, &format!("{prefix}{}::", module.ident), out);
                }
            }
            _ => {}
        }
    }
}

/// The `.rs` files under `src/`, relative to it, except `lib.rs` (which only wires modules).
fn source_files(src: &Path) -> Result<BTreeSet<PathBuf>> {
    let mut files = BTreeSet::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in
            fs::read_dir(&folder).with_context(|| format!("cannot list {}", folder.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path.strip_prefix(src)?.to_path_buf();
                if relative != Path::new("lib.rs") {
                    files.insert(relative);
                }
            }
        }
    }
    Ok(files)
}

/// Differences between a chapter's stubs and its solution, one sentence each. A stub file without
/// a solution twin is given code: it exists once, in the chapter, and both builds compile it.
pub fn compare(stub_src: &Path, solution_src: &Path) -> Result<Vec<String>> {
    let stub_files = source_files(stub_src)?;
    let solution_files = source_files(solution_src)?;
    let mut problems = Vec::new();
    for missing in solution_files.difference(&stub_files) {
        problems.push(format!(
            "{} has no stub twin in {}",
            solution_src.join(missing).display(),
            stub_src.display()
        ));
    }
    for file in stub_files.intersection(&solution_files) {
        let read = |path: PathBuf| -> Result<BTreeSet<String>> {
            let source = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            public_items(&source).with_context(|| format!("cannot parse {}", path.display()))
        };
        if fs::read(stub_src.join(file))? == fs::read(solution_src.join(file))? {
            problems.push(format!(
                "{} is a copy of its stub: given code lives only in {}",
                solution_src.join(file).display(),
                stub_src.display()
            ));
        }
        let stub = read(stub_src.join(file))?;
        let solution = read(solution_src.join(file))?;
        for item in solution.difference(&stub) {
            problems.push(format!(
                "{}: the solution has `{item}`, the stub does not",
                file.display()
            ));
        }
        for item in stub.difference(&solution) {
            problems.push(format!(
                "{}: the stub has `{item}`, the solution does not",
                file.display()
            ));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_comments_and_private_fields_do_not_matter() {
        let stub = "/// Doc.\npub fn f(x: i32) -> i32 { todo!() }\npub struct S { keep: u8 }\nimpl S { pub fn g(&self) {} fn private() {} }";
        let solution = "pub fn f(x: i32) -> i32 { x + 1 }\npub struct S { other: Vec<u8> }\nimpl S { pub fn g(&self) { } }";
        assert_eq!(public_items(stub).unwrap(), public_items(solution).unwrap());
    }

    #[test]
    fn a_changed_signature_is_reported() {
        let stub = public_items("pub fn f(x: i32) -> i32 { todo!() }").unwrap();
        let solution = public_items("pub fn f(x: i64) -> i32 { 0 }").unwrap();
        assert_ne!(stub, solution);
        let public_field = public_items("pub struct S { pub a: u8 }").unwrap();
        let other_field = public_items("pub struct S { pub a: u16 }").unwrap();
        assert_ne!(public_field, other_field);
    }
}
