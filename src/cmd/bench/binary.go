package main

import (
	"debug/elf"
	"fmt"
	"os"
	"strings"
)

// binaryInfo is what the size figure needs to know about the agent binary.
type binaryInfo struct {
	Size     int64
	Arch     string // "amd64", "arm64", … or the ELF machine when unknown
	Stripped bool   // no symbol table and no DWARF
	Static   bool   // no program interpreter
}

// inspectBinary reads the agent binary's ELF header: its size only means
// something for a stripped linux/amd64 build, which is what the budget is
// about.
func inspectBinary(path string) (binaryInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return binaryInfo{}, fmt.Errorf("agent binary: %w", err)
	}
	f, err := elf.Open(path)
	if err != nil {
		return binaryInfo{}, fmt.Errorf("agent binary %s is not a Linux (ELF) executable: %w", path, err)
	}
	defer f.Close()
	info := binaryInfo{Size: st.Size(), Arch: elfArch(f), Stripped: true, Static: true}
	for _, s := range f.Sections {
		if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			info.Stripped = false
		}
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			info.Static = false
		}
	}
	return info, nil
}

func elfArch(f *elf.File) string {
	switch {
	case f.Machine == elf.EM_X86_64 && f.Class == elf.ELFCLASS64:
		return "amd64"
	case f.Machine == elf.EM_AARCH64:
		return "arm64"
	case f.Machine == elf.EM_ARM:
		return "arm"
	case f.Machine == elf.EM_386:
		return "386"
	}
	return f.Machine.String()
}
