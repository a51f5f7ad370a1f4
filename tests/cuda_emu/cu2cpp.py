#!/usr/bin/env python3
"""tests/cuda_emu/cu2cpp.py: rewrite a .cu file into C++ that tests/cuda_emu runs on the CPU.

It rewrites only the CUDA syntax that is not also C++, or whose C++ reading would be wrong:
    kernel<<<grid, block[, smem[, stream]]>>>(args);   (kernel may have template arguments)
        -> emu_launch(grid, block[, smem[, stream]], [=]() { kernel(args); });
    __shared__ [__align__(n)] T name[N];      (one copy per block, not one per program)
        -> static EmuSharedKey k; T (&name)[N] = *reinterpret_cast<T (*)[N]>(emu_shared(&k, sizeof(T[N]), n));
    extern __shared__ T name[];               (the launch's dynamic shared memory)
        -> T *name = reinterpret_cast<T *>(emu_dynamic_shared());
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {..}, {..}, {..}, {..};" : outs : ins);
        -> emu_mma_m16n8k32_s8(&d0, .., a0, .., b0, b1, c0, ..);   (cuda_emu_core.h)
       and likewise mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 -> emu_mma_m16n8k16_bf16
       (its D and C are fp32 registers, "f" operands), ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16
       -> emu_ldmatrix_x4[_trans], cp.async.{ca,cg}.shared.global [dst], [src], cp-size, src-size
       -> emu_cp_async, cp.async.commit_group, cp.async.wait_group N, cp.async.wait_all (shared
       addresses are __cvta_generic_to_shared's, which cuda_emu_core.h defines); any other inline
       PTX is refused: the emulator has no model of it
    a file that calls cudaLaunchCooperativeKernel gets every kernel registered (its address
    and a typed trampoline), so the runtime can call a kernel it is given as a void pointer
and an #include of another .cu or .cuh file (llmc/'s kernel headers) points at that file's
rewritten copy (written too, next to the output). The rewritten copy lives elsewhere than its
source, so its other #include "..." of files next to the source become absolute paths.
Usage: python3 tests/cuda_emu/cu2cpp.py IN.cu OUT.cpp
"""
import os
import re
import sys

# a kernel name, with template arguments if any (no nested <> or ()): kernel<4, 8><<<...>>>(...)
LAUNCH = re.compile(r'(\w+(?:\s*<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\((.*?)\)\s*;', re.S)
INCLUDE_CU = re.compile(r'#include\s+"([^"]+\.cuh?)"')
INCLUDE_LOCAL = re.compile(r'#include\s+"([^"]+)"')
TYPE = r'((?:(?:const|volatile|unsigned|signed)\s+)*[A-Za-z_][\w:]*(?:\s*\*)*)'
DYN_SHARED = re.compile(r'extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?' + TYPE + r'\s+(\w+)\s*\[\s*\]\s*;')
SHARED = re.compile(r'__shared__\s+(?:__align__\(\s*(\d+)\s*\)\s+)?' + TYPE + r'\s+(\w+)\s*((?:\[[^\]]*\]\s*)*);')
ASM = re.compile(r'\basm\s*(?:volatile\s*)?\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)(.*?)\)\s*;', re.S)
KERNEL = re.compile(r'__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*)?(\w+)\s*\(')

# inline PTX the emulator implements: the emulator's function and the instruction's operand
# groups in order, each (role, register kind, count). Roles: 'out' a group of output registers
# (passed by address), 'in' input registers, 'addr' an address [%n], 'imm' an immediate (a number
# in the code, or %n with an "n" constraint). Kinds: the letter the constraint must have ('r':
# 32-bit integer register, 'l': 64-bit, 'f': fp32 register, 'n': a compile-time constant).
MMA_GROUPS = lambda dk, ck: [('out', dk, 4), ('in', 'r', 4), ('in', 'r', 2), ('in', ck, 4)]
CP_ASYNC_GROUPS = [('addr', 'r', 1), ('addr', 'l', 1), ('imm', 'n', 1), ('in', 'r', 1)]  # src-size required
ASM_SUPPORTED = {
    'mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32': ('emu_mma_m16n8k32_s8', MMA_GROUPS('r', 'r')),
    'mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32': ('emu_mma_m16n8k16_bf16', MMA_GROUPS('f', 'f')),
    'ldmatrix.sync.aligned.m8n8.x4.shared.b16': ('emu_ldmatrix_x4', [('out', 'r', 4), ('addr', 'r', 1)]),
    'ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16': ('emu_ldmatrix_x4_trans', [('out', 'r', 4), ('addr', 'r', 1)]),
    'cp.async.ca.shared.global': ('emu_cp_async_ca', CP_ASYNC_GROUPS),
    'cp.async.cg.shared.global': ('emu_cp_async_cg', CP_ASYNC_GROUPS),
    'cp.async.commit_group': ('emu_cp_async_commit_group', []),
    'cp.async.wait_group': ('emu_cp_async_wait_group', [('imm', 'n', 1)]),
    'cp.async.wait_all': ('emu_cp_async_wait_all', []),
}
REG_KIND = {'r': 'a 32-bit integer register', 'l': 'a 64-bit register', 'f': 'an fp32 register',
            'n': 'an immediate'}


def fail(path, msg):
    sys.exit(f"cu2cpp: {path}: {msg}")


def strip_comments(text):
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    return re.sub(r'//[^\n]*', ' ', text)


def asm_operands(path, section):
    """'"+r"(d[0]), "r"(a[0])' -> [('+r', 'd[0]'), ('r', 'a[0]')], parentheses balanced"""
    ops, i = [], 0
    while True:
        m = re.compile(r'\s*"([^"]*)"\s*\(').match(section, i)
        if not m:
            break
        depth, j = 1, m.end()
        while depth:
            if j >= len(section):
                fail(path, "unbalanced parentheses in an asm operand")
            depth += {'(': 1, ')': -1}.get(section[j], 0)
            j += 1
        ops.append((m.group(1), section[m.end():j - 1].strip()))
        i = j
        m = re.compile(r'\s*,').match(section, i)
        if not m:
            break
        i = m.end()
    if section[i:].strip():
        fail(path, f"cannot read the asm operands near: {section[i:i + 40]!r}")
    return ops


def split_top(text):
    """'{%0,%1}, [%2], 16' -> ['{%0,%1}', '[%2]', '16']: commas outside braces and brackets"""
    out, depth, cur = [], 0, ''
    for ch in text:
        depth += ch in '{['
        depth -= ch in '}]'
        if ch == ',' and depth == 0:
            out.append(cur.strip())
            cur = ''
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def rewrite_asm(path, m):
    code = ''.join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))
    code = code.replace('\\n', ' ').replace('\\t', ' ').strip().rstrip(';').strip()
    opcode, _, operands = code.partition(' ')
    if opcode not in ASM_SUPPORTED:
        fail(path, f"inline PTX `{opcode}` cannot be emulated (supported: {', '.join(ASM_SUPPORTED)})")
    func, groups = ASM_SUPPORTED[opcode]
    sections = m.group(2).split(':')  # ": outputs : inputs [: clobbers]"; no ':' inside these operands
    if groups and (len(sections) < 3 or sections[0].strip()):
        fail(path, f"asm `{opcode}`: expected ': outputs : inputs'")
    ops = (asm_operands(path, sections[1]) + asm_operands(path, sections[2])) if len(sections) >= 3 else []
    tokens = split_top(operands)
    if len(tokens) != len(groups):
        fail(path, f"asm `{opcode}`: expected {len(groups)} operand groups")
    args = []
    for gi, (tok, (role, kind, count)) in enumerate(zip(tokens, groups)):
        if role == 'imm' and re.fullmatch(r'\d+', tok):  # a number written in the code
            args.append(tok)
            continue
        if role == 'addr':
            if not re.fullmatch(r'\[\s*%\d+\s*\]', tok):
                fail(path, f"asm `{opcode}`: operand group {gi} should be an address [%n]")
            tok = tok.strip('[] ')
        braced = tok.startswith('{')
        names = [r.strip() for r in (tok.strip('{}').split(',') if braced else [tok])]
        if len(names) != count or not all(re.fullmatch(r'%\d+', r) for r in names) or (braced != (count > 1)):
            fail(path, f"asm `{opcode}`: operand group {gi} should be {count} registers")
        for r in names:
            n = int(r[1:])
            if n >= len(ops):
                fail(path, f"asm `{opcode}`: operand {r} does not exist")
            constraint, expr = ops[n]
            if kind not in constraint:
                fail(path, f"asm `{opcode}`: operand {r} is not {REG_KIND[kind]} (\"{kind}\")")
            if role == 'out':  # written, so an output operand passed by address
                if '=' not in constraint and '+' not in constraint:
                    fail(path, f"asm `{opcode}`: destination {r} is not an output operand")
                args.append(f'&({expr})')
            else:
                args.append(f'({expr})')
    return f'{func}({", ".join(args)});'


def convert(src_path, out_path):
    with open(src_path) as f:
        text = f.read()

    def launch(m):
        kernel, config, args = m.group(1), m.group(2), m.group(3)
        if config.count(',') < 1:
            fail(src_path, f"cannot read the launch configuration of {kernel}")
        return f'emu_launch({config}, [=]() {{ {kernel}({args}); }});'

    text = LAUNCH.sub(launch, text)

    counter = [0]

    def dyn_shared(m):
        return f'{m.group(1)} *{m.group(2)} = reinterpret_cast<{m.group(1)} *>(emu_dynamic_shared());'

    def shared(m):
        align, typ, name, dims = m.group(1), m.group(2), m.group(3), m.group(4).strip()
        counter[0] += 1
        key = f'emu_shared_key_{name}_{counter[0]}'
        al = align if align else f'alignof({typ})'
        if dims:
            return (f'static EmuSharedKey {key}; {typ} (&{name}){dims} = '
                    f'*reinterpret_cast<{typ} (*){dims}>(emu_shared(&{key}, sizeof({typ} {dims}), {al}));')
        return f'static EmuSharedKey {key}; {typ} &{name} = *reinterpret_cast<{typ} *>(emu_shared(&{key}, sizeof({typ}), {al}));'

    text = DYN_SHARED.sub(dyn_shared, text)
    text = SHARED.sub(shared, text)
    text = ASM.sub(lambda m: rewrite_asm(src_path, m), text)

    def include(m):
        # next to the including file, else from the repository root (the -I of the dev/cuda builds)
        inc = os.path.normpath(os.path.join(os.path.dirname(src_path), m.group(1)))
        if not os.path.isfile(inc):
            inc = os.path.normpath(m.group(1))
        if not os.path.isfile(inc):
            fail(src_path, f"cannot find the included {m.group(1)}")
        inc_out = os.path.join(os.path.dirname(out_path), os.path.basename(inc) + '.cpp')
        convert(inc, inc_out)
        return f'#include "{os.path.abspath(inc_out)}"'

    def include_local(m):  # a header next to the source: by its absolute path from the copy
        inc = os.path.join(os.path.dirname(src_path), m.group(1))
        return f'#include "{os.path.abspath(inc)}"' if os.path.isfile(inc) else m.group(0)

    text = INCLUDE_CU.sub(include, text)
    text = INCLUDE_LOCAL.sub(lambda m: m.group(0) if m.group(1).endswith('.cpp') else include_local(m), text)
    code = strip_comments(text)
    if '<<<' in code:
        fail(src_path, "a launch was not rewritten")
    if re.search(r'\b__shared__\b', code):
        fail(src_path, "a __shared__ declaration was not rewritten")
    if re.search(r'\basm\s*(volatile\s*)?\(', code):
        fail(src_path, "an asm statement was not rewritten")

    registrations = ''
    if 'cudaLaunchCooperativeKernel' in code:
        for m in KERNEL.finditer(code):
            if re.search(r'template\s*<[^;{}]*>\s*$', code[max(0, m.start() - 200):m.start()]):
                continue  # a template is no one function: it cannot be launched by address
            k = m.group(1)
            registrations += (f'static EmuKernelRegistration emu_kernel_registration_{k}((const void *)&{k}, '
                              f'&EmuKernelTrampoline<decltype(&{k}), &{k}>::call, "{k}");\n')
    with open(out_path, 'w') as f:
        f.write(f'// generated by tests/cuda_emu/cu2cpp.py from {src_path}: do not edit\n')
        f.write('#include <cuda_runtime.h>\n')
        f.write(text)
        if registrations:
            f.write('\n// the kernels, by address, for cudaLaunchCooperativeKernel (cu2cpp.py)\n' + registrations)


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(sys.argv[1], sys.argv[2])
