/* config.h for building elfutils' libelf (0.188) with zig cc, in place of ./configure. Only what
 * libelf's sources test for. */
#ifndef FASTPATH_ELFUTILS_CONFIG_H
#define FASTPATH_ELFUTILS_CONFIG_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#define PACKAGE "elfutils"
#define PACKAGE_NAME "elfutils"
#define PACKAGE_VERSION "0.188"
#define PACKAGE_URL "http://elfutils.org/"
#define PACKAGE_BUGREPORT "https://sourceware.org/bugzilla"
#define VERSION "0.188"
#define HAVE_DECL_MEMPCPY 1
#define HAVE_DECL_MEMRCHR 1
#define HAVE_DECL_RAWMEMCHR 1
#define HAVE_DECL_REALLOCARRAY 1
#define HAVE_DECL_POWEROF2 1
#define HAVE_ERROR_H 1
#define HAVE_STDATOMIC_H 1
#define HAVE_VISIBILITY 1
#define HAVE_GCC_STRUCT 1
#define HAVE_MREMAP 1
#define USE_ZLIB 1
/* No USE_LOCKS (libbpf uses one Elf per thread), no USE_ZSTD, no SYMBOL_VERSIONING (static). */
/* configure's config.h ends the same way: elfutils' own macros (attribute_hidden, rwlock_*). */
#include <eu-config.h>
#endif
