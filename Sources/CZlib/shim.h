#ifndef SWITCHYARD_CZLIB_SHIM_H
#define SWITCHYARD_CZLIB_SHIM_H
#include <zlib.h>

/* deflateInit2 is a macro that Swift cannot import. windowBits 15 + 16 asks for a gzip
   header and trailer instead of zlib's. */
static inline int sy_deflate_init_gzip(z_stream *stream, int level) {
    return deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}
#endif
