// The exported dlsym. glibc answers RTLD_NEXT and RTLD_DEFAULT from the caller's own object:
// "next" after it (the OpenMP `import torch` hang HAMi hit when that was the shim), and the
// default scope with its own local scope in it (a library loaded RTLD_LOCAL, as CPython loads
// every extension, finds its own symbols). So both are a tail jump to glibc's dlsym, which then
// sees the real caller; RTLD_DEFAULT still finds the shim's hooks first, the shim being preloaded
// ahead of the driver. An explicit handle goes to tessera_dlsym_hooked, which applies the
// allow-list (such a lookup does not depend on the caller).
#if defined(__x86_64__)
        .text
        .globl  dlsym
        .type   dlsym, @function
dlsym:
        .cfi_startproc
        cmpq    $-1, %rdi                        // RTLD_NEXT is (void*)-1
        je      2f
        testq   %rdi, %rdi                       // RTLD_DEFAULT is (void*)0
        jne     tessera_dlsym_hooked
2:      movq    tessera_next_dlsym(%rip), %rax
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
        cmn     x0, #1                           // RTLD_NEXT is (void*)-1
        b.eq    2f
        cbz     x0, 2f                           // RTLD_DEFAULT is (void*)0
        b       tessera_dlsym_hooked
2:      adrp    x16, tessera_next_dlsym
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
