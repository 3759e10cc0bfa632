/*
 * openssl-offsets-bio.c — the BIO offsets (struct bio_st is private to
 * crypto/bio, and bio_local.h refuses to come after openssl/bio.h: hence a
 * translation unit of its own).
 */
#if __has_include("bio_local.h")
#include "bio_local.h"
#else
#include "bio_lcl.h" /* 1.1.1a, 1.1.1b */
#endif
#include <stddef.h>
#include <stdio.h>

#define P(name, value) printf("%s %#lx\n", name, (unsigned long)(value))

void bio_offsets(void);

void bio_offsets(void)
{
	_Static_assert(sizeof(((BIO *)0)->num) == 4, "int num");
	P("bio_method", offsetof(BIO, method));
	P("bio_num", offsetof(BIO, num));
	P("bio_method_type", offsetof(BIO_METHOD, type));
}
