//! The functions a Linux shared library exports, read from its dynamic symbol table (64-bit,
//! little-endian ELF: x86_64 and aarch64), so the build needs no binutils.

use std::{fs, path::Path};

const SHT_DYNSYM: u32 = 11;
const STT_FUNC: u8 = 2;
const STB_GLOBAL: u8 = 1;
const STB_WEAK: u8 = 2;

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<usize> {
    let value = u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?);
    usize::try_from(value).ok()
}

/// The names of the functions `library` defines and exports; `None` if it is not a 64-bit
/// little-endian ELF file with a dynamic symbol table.
pub fn exported_functions(library: &Path) -> Option<Vec<String>> {
    let bytes = fs::read(library).ok()?;
    let (elf64, little_endian) = (2, 1);
    if bytes.get(..4)? != b"\x7fELF" || bytes[4] != elf64 || bytes[5] != little_endian {
        return None;
    }
    // Section headers: where (e_shoff), how big each (e_shentsize) and how many (e_shnum).
    let (table, entry_size) = (u64_at(&bytes, 0x28)?, usize::from(u16_at(&bytes, 0x3a)?));
    let section = |index: usize| table + index * entry_size;
    let count = usize::from(u16_at(&bytes, 0x3c)?);
    let dynsym =
        (0..count).find(|&index| u32_at(&bytes, section(index) + 4) == Some(SHT_DYNSYM))?;
    // Each section header: sh_link at 0x28 (here: the string table), sh_offset at 0x18, sh_size
    // at 0x20, sh_entsize at 0x38. Each symbol: st_name (u32), st_info (u8), st_other (u8),
    // st_shndx (u16), then value and size.
    let strings = u64_at(
        &bytes,
        section(u32_at(&bytes, section(dynsym) + 0x28)? as usize) + 0x18,
    )?;
    let (symbols, size) = (
        u64_at(&bytes, section(dynsym) + 0x18)?,
        u64_at(&bytes, section(dynsym) + 0x20)?,
    );
    let symbol_size = u64_at(&bytes, section(dynsym) + 0x38)?.max(1);
    let mut names = Vec::new();
    for symbol in (symbols..symbols + size).step_by(symbol_size) {
        let info = *bytes.get(symbol + 4)?;
        let (binding, kind) = (info >> 4, info & 0xf);
        let defined = u16_at(&bytes, symbol + 6)? != 0;
        if defined && kind == STT_FUNC && (binding == STB_GLOBAL || binding == STB_WEAK) {
            let name = &bytes[strings + u32_at(&bytes, symbol)? as usize..];
            let end = name.iter().position(|&byte| byte == 0)?;
            names.push(String::from_utf8_lossy(&name[..end]).into_owned());
        }
    }
    Some(names)
}
