// FORWARD(name) defines an exported function `name` that jumps to `scipy_name`, leaving the
// caller's registers, stack and return address as they were: one line forwards a function of any
// signature (BLAS's Fortran and C interfaces alike) without declaring it.
#pragma once
#if defined(__x86_64__)
#define FORWARD(name)                                                                              \
    __asm__(".text\n.globl " #name "\n.type " #name ", @function\n" #name ":\n"                   \
            "\tjmp scipy_" #name "@PLT\n.size " #name ", .-" #name "\n");
#elif defined(__aarch64__)
#define FORWARD(name)                                                                              \
    __asm__(".text\n.globl " #name "\n.type " #name ", %function\n" #name ":\n"                   \
            "\tb scipy_" #name "\n.size " #name ", .-" #name "\n");
#else
#error "the BLAS forwarder supports x86_64 and aarch64"
#endif
