/* x509: what the files of src/x509 share. Not installed, not included outside src/x509. */
#ifndef CERTVAULT_X509_INTERNAL_H
#define CERTVAULT_X509_INTERNAL_H

#include <stddef.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/x509.h>

/* Seconds since the epoch of an ASN1_TIME (UTCTime or GeneralizedTime, any year up to 9999).
 * Returns 0 or CV_ERR_BAD_ENCODING. */
int x509_time_epoch(const ASN1_TIME *t, time_t *ret);

/* The name in RFC 2253 form into buf (truncated at a character boundary if it does not fit).
 * Returns 0 or CV_ERR_NOMEM / CV_ERR_INTERNAL. */
int x509_name_text(const X509_NAME *name, char *buf, size_t buflen);

/* A mem BIO's contents as a malloc'd NUL-terminated string. Returns 0 or CV_ERR_NOMEM. */
int x509_bio_string(BIO *bio, char **ret_text, size_t *ret_len);

#endif
