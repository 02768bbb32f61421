// The exported dlsym. Lookups relative to the caller (RTLD_NEXT) must reach glibc with the
// caller's own return address, or glibc resolves "next" relative to the shim (the OpenMP
// `import torch` hang HAMi hit). So RTLD_NEXT is a tail jump to glibc's dlsym; every other
// handle goes to tessera_dlsym_hooked, which applies the allow-list.
#if defined(__x86_64__)
        .text
        .globl  dlsym
        .type   dlsym, @function
dlsym:
        .cfi_startproc
        cmpq    $-1, %rdi                        // RTLD_NEXT is (void*)-1
        jne     tessera_dlsym_hooked
        movq    tessera_next_dlsym(%rip), %rax
        testq   %rax, %rax
        jz      1f
        jmp     *%rax
1:      pushq   %rdi
        .cfi_adjust_cfa_offset 8
        pushq   %rsi
        .cfi_adjust_cfa_offset 8
        subq    $8, %rsp                         // keep the stack 16-byte aligned at the call
        .cfi_adjust_cfa_offset 8
        call    tessera_resolve_next_dlsym
        addq    $8, %rsp
        .cfi_adjust_cfa_offset -8
        popq    %rsi
        .cfi_adjust_cfa_offset -8
        popq    %rdi
        .cfi_adjust_cfa_offset -8
        jmp     *%rax
        .cfi_endproc
        .size   dlsym, .-dlsym
#elif defined(__aarch64__)
        .text
        .globl  dlsym
        .type   dlsym, %function
dlsym:
        cmn     x0, #1
        b.ne    tessera_dlsym_hooked
        adrp    x16, tessera_next_dlsym
        ldr     x16, [x16, :lo12:tessera_next_dlsym]
        cbz     x16, 1f
        br      x16
1:      stp     x29, x30, [sp, #-32]!
        stp     x0, x1, [sp, #16]
        bl      tessera_resolve_next_dlsym
        mov     x16, x0
        ldp     x0, x1, [sp, #16]
        ldp     x29, x30, [sp], #32
        br      x16
        .size   dlsym, .-dlsym
#else
#error "the dlsym entry is written for x86-64 and AArch64"
#endif
        .section .note.GNU-stack,"",%progbits
