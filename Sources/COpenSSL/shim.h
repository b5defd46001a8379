#ifndef SWITCHYARD_COPENSSL_SHIM_H
#define SWITCHYARD_COPENSSL_SHIM_H
#include <sys/types.h>
#include <string.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/opensslv.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/core_names.h>
#include <pthread.h>
#include <stdlib.h>

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
/* Seconds until the certificate's notAfter (negative once expired); a very negative value
   when the time cannot be read. */
static inline long long sy_x509_seconds_left(X509 *certificate) {
    int days = 0, seconds = 0;
    if (!ASN1_TIME_diff(&days, &seconds, NULL, X509_get0_notAfter(certificate))) return -(1LL << 40);
    return (long long)days * 86400 + seconds;
}
static inline int sy_x509_days_left(X509 *certificate) {
    int days = 0, seconds = 0;
    if (!ASN1_TIME_diff(&days, &seconds, NULL, X509_get0_notAfter(certificate))) return -100000;
    return days;
}
/* Session ticket keys with rotation: tickets are encrypted with the current key; a ticket
   made with the previous key is still accepted, older ones are not. Every accepted ticket is
   renewed. Shared by every context of a listener; the lock is taken once per handshake, never
   per request. */
typedef struct { unsigned char name[16]; unsigned char aes[32]; unsigned char hmac[32]; } sy_ticket_key;
typedef struct {
    pthread_mutex_t lock;
    sy_ticket_key current;
    sy_ticket_key previous;
    int has_previous;
} sy_ticket_keys;

static inline sy_ticket_keys *sy_ticket_keys_new(void) {
    sy_ticket_keys *keys = (sy_ticket_keys *)calloc(1, sizeof(sy_ticket_keys));
    if (keys == NULL) return NULL;
    pthread_mutex_init(&keys->lock, NULL);
    if (RAND_bytes((unsigned char *)&keys->current, sizeof(sy_ticket_key)) != 1) { free(keys); return NULL; }
    return keys;
}

static inline int sy_ticket_keys_rotate(sy_ticket_keys *keys) {
    sy_ticket_key fresh;
    if (RAND_bytes((unsigned char *)&fresh, sizeof(fresh)) != 1) return 0;
    pthread_mutex_lock(&keys->lock);
    keys->previous = keys->current;
    keys->has_previous = 1;
    keys->current = fresh;
    pthread_mutex_unlock(&keys->lock);
    OPENSSL_cleanse(&fresh, sizeof(fresh));
    return 1;
}

static int sy_ticket_callback(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cipher,
                              EVP_MAC_CTX *mac, int encrypt) {
    sy_ticket_keys *keys = (sy_ticket_keys *)SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (keys == NULL) return -1;
    sy_ticket_key *key = NULL;
    int result = 1;
    pthread_mutex_lock(&keys->lock);
    if (encrypt) {
        key = &keys->current;
        memcpy(name, key->name, 16);
        if (RAND_bytes(iv, 16) != 1) { pthread_mutex_unlock(&keys->lock); return -1; }
    } else if (memcmp(name, keys->current.name, 16) == 0) {
        key = &keys->current;
        /* Renewed too: TLS 1.3 clients use a ticket once, so a resumption without a fresh one
           makes their next connection a full handshake. */
        result = 2;
    } else if (keys->has_previous && memcmp(name, keys->previous.name, 16) == 0) {
        key = &keys->previous;
        result = 2; /* valid, but issue a ticket under the current key */
    } else {
        pthread_mutex_unlock(&keys->lock);
        return 0; /* unknown or expired key: full handshake */
    }
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key->hmac, sizeof(key->hmac));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    int ok = EVP_MAC_CTX_set_params(mac, params) == 1 &&
        (encrypt ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, key->aes, iv)
                 : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, key->aes, iv)) == 1;
    pthread_mutex_unlock(&keys->lock);
    return ok ? result : -1;
}

static inline void sy_ssl_ctx_use_ticket_keys(SSL_CTX *ctx, sy_ticket_keys *keys) {
    SSL_CTX_set_app_data(ctx, keys);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, sy_ticket_callback);
}
#endif
