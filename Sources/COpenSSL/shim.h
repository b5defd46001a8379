#ifndef SWITCHYARD_COPENSSL_SHIM_H
#define SWITCHYARD_COPENSSL_SHIM_H
#include <sys/types.h>
#include <string.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/opensslv.h>

/* Function-like macros do not import into Swift; these wrappers expose them. */
static inline long sy_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}
static inline long sy_ssl_ctx_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
static inline const char *sy_openssl_version_text(void) { return OPENSSL_VERSION_TEXT; }
static inline int sy_tls1_2(void) { return TLS1_2_VERSION; }
static inline long sy_ssl_set_sni(SSL *ssl, const char *name) { return SSL_set_tlsext_host_name(ssl, name); }
static inline int sy_verify_required(void) { return SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT; }
static inline int sy_verify_optional(void) { return SSL_VERIFY_PEER; }
static inline uint64_t sy_server_options(void) { return SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE; }
static inline int sy_tls1_3(void) { return TLS1_3_VERSION; }

/* SNI: the certificate whose names (SAN, wildcards; X509_check_host) match the requested
   host; the first one (the default) otherwise. */
typedef struct {
    SSL_CTX **contexts;
    X509 **certificates;
    int count;
} sy_sni_table;

static int sy_sni_select(SSL *ssl, int *alert, void *arg) {
    (void)alert;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    sy_sni_table *table = (sy_sni_table *)arg;
    if (name == NULL || table == NULL) return SSL_TLSEXT_ERR_OK;
    for (int i = 0; i < table->count; i++) {
        if (X509_check_host(table->certificates[i], name, strlen(name), 0, NULL) == 1) {
            if (SSL_get_SSL_CTX(ssl) != table->contexts[i]) SSL_set_SSL_CTX(ssl, table->contexts[i]);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

static inline void sy_ssl_ctx_use_sni_table(SSL_CTX *ctx, sy_sni_table *table) {
    SSL_CTX_set_tlsext_servername_callback(ctx, sy_sni_select);
    SSL_CTX_set_tlsext_servername_arg(ctx, table);
}

/* ALPN: the first of the server's protocols (wire format in arg) that the client offers. */
typedef struct { unsigned char *wire; unsigned int length; } sy_alpn_list;

static int sy_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    sy_alpn_list *list = (sy_alpn_list *)arg;
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, outlen, list->wire, list->length, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

static inline void sy_ssl_ctx_use_alpn(SSL_CTX *ctx, sy_alpn_list *list) {
    SSL_CTX_set_alpn_select_cb(ctx, sy_alpn_select, list);
}

/* Days from now until the certificate's notAfter (negative when expired). */
static inline int sy_x509_days_left(X509 *certificate) {
    int days = 0, seconds = 0;
    if (!ASN1_TIME_diff(&days, &seconds, NULL, X509_get0_notAfter(certificate))) return -100000;
    return days;
}
#endif
