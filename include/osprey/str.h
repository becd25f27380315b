/* SPDX-License-Identifier: ISC */
/* Small string helpers used across the core and modules. */
#ifndef OSPREY_STR_H
#define OSPREY_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ASCII case-insensitive comparisons (locale-independent). */
bool	osp_str_eqi(const char *a, const char *b);
bool	osp_str_has_prefix_i(const char *s, const char *prefix);
/* strlcpy semantics: returns strlen(src); dst always terminated if size>0. */
size_t	osp_strlcpy(char *dst, const char *src, size_t size);
/* Whether s is a DNS host name in ASCII (RFC 1123 §2.1): labels of 1-63
 * letters, digits and inner hyphens, 253 characters at most, no trailing
 * dot. */
bool	osp_str_is_hostname(const char *s);
/* Value of a hexadecimal digit (either case), or -1. */
int	osp_str_hexval(int c);
/* Length (1 to 4) of the well-formed UTF-8 sequence at s (RFC 3629 §4:
 * no overlong forms, no surrogates, nothing above U+10FFFF) within len
 * bytes, its code point in *cp_r (may be NULL); 0 when malformed or
 * truncated. Bytes are read only while the sequence is still valid, so a
 * NUL-terminated string may pass SIZE_MAX. Any thread. */
size_t	osp_utf8_decode(const void *s, size_t len, uint32_t *cp_r);
/* Parses an unsigned decimal integer of the whole string, <= max.
 * Returns OSP_OK or -EINVAL / -ERANGE. */
int	osp_str_to_u64(const char *s, uint64_t max, uint64_t *val_r);

#endif
