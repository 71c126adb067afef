/* cv-testcert: makes a certificate and its private key as PEM files, with exact dates, key
 * types, digests and key formats, for the integration tests and the benchmarks.
 *
 *   cv-testcert --key p256 --cn www.example.com --san www.example.com,api.example.com \
 *               --not-before -3600 --not-after 7776000 --cert-out c.pem --key-out k.pem
 *
 * Times are seconds from now (signed) or @EPOCH. Exit 0 on success, 2 on bad arguments,
 * 1 when something else fails. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "testcert.h"

/* Dates OpenSSL and RFC 5280 can write: 0001-01-01 to 9999-12-31T23:59:59Z. */
#define EPOCH_MIN (-62135596800LL)
#define EPOCH_MAX 253402300799LL

static const char usage[] =
	"usage: cv-testcert --cert-out FILE --key-out FILE [options]\n"
	"  --key TYPE            rsa1024 rsa2048 rsa3072 rsa4096 rsa8192 p256 p384 p521\n"
	"                        secp256k1 ed25519 ed448 (default p256)\n"
	"  --cn NAME             subject CN (default: none)\n"
	"  --san A,B,...         DNS names (IP:1.2.3.4 for an address; default: none)\n"
	"  --not-before T        seconds from now, or @EPOCH (default -3600)\n"
	"  --not-after T         seconds from now, or @EPOCH (default 7776000, 90 days)\n"
	"  --md NAME             sha256 (default), sha384, sha512, sha1, md5\n"
	"  --key-format F        pkcs8 (default), pkcs1, sec1, pkcs8enc (needs --password)\n"
	"  --password PW         password for pkcs8enc\n"
	"  --ca                  basicConstraints CA:TRUE\n"
	"  --serial N            serial number (default: random)\n"
	"  --issuer-cert FILE    sign with this CA (PEM) ...\n"
	"  --issuer-key FILE     ... and its unencrypted PEM key (default: self-signed)\n";

static int bad_args(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int bad_args(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cv-testcert: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%s", usage);
	return 2;
}

/* A whole decimal number within [min, max]; no sign-less overflow, no trailing text. */
static int parse_ll(const char *s, long long min, long long max, long long *ret)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0' || (*s != '-' && *s != '+' && (*s < '0' || *s > '9')))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*ret = v;
	return 0;
}

/* "-3600" (from now) or "@1767225600" (absolute). */
static int parse_when(const char *s, time_t now, time_t *ret)
{
	long long v;

	if (s[0] == '@') {
		if (parse_ll(s + 1, EPOCH_MIN, EPOCH_MAX, &v) < 0)
			return -1;
		*ret = (time_t)v;
		return 0;
	}
	if (parse_ll(s, EPOCH_MIN - (long long)now, EPOCH_MAX - (long long)now, &v) < 0)
		return -1;
	*ret = now + (time_t)v;
	return 0;
}

static int write_file(const char *path, const char *text, mode_t mode)
{
	size_t len = strlen(text);
	ssize_t n;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		fprintf(stderr, "cv-testcert: %s: %s\n", path, strerror(errno));
		return -1;
	}
	/* the file may have existed with looser permissions */
	if (fchmod(fd, mode) < 0 || (n = write(fd, text, len)) < 0 || (size_t)n != len) {
		fprintf(stderr, "cv-testcert: %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (close(fd) < 0) {
		fprintf(stderr, "cv-testcert: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int read_issuer(const char *cert_path, const char *key_path, X509 **ret_cert,
		       EVP_PKEY **ret_key)
{
	FILE *f;

	f = fopen(cert_path, "r");
	if (f == NULL) {
		fprintf(stderr, "cv-testcert: %s: %s\n", cert_path, strerror(errno));
		return -1;
	}
	*ret_cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (*ret_cert == NULL) {
		fprintf(stderr, "cv-testcert: %s: not a PEM certificate\n", cert_path);
		return -1;
	}
	f = fopen(key_path, "r");
	if (f == NULL) {
		fprintf(stderr, "cv-testcert: %s: %s\n", key_path, strerror(errno));
		return -1;
	}
	*ret_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (*ret_key == NULL) {
		fprintf(stderr, "cv-testcert: %s: not an unencrypted PEM private key\n", key_path);
		return -1;
	}
	if (X509_check_private_key(*ret_cert, *ret_key) != 1) {
		fprintf(stderr, "cv-testcert: %s does not belong to %s\n", key_path, cert_path);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_KEY = 1, O_CN, O_SAN, O_NB, O_NA, O_MD, O_KF, O_PW, O_CA, O_SERIAL, O_CERT_OUT,
	       O_KEY_OUT, O_ISSUER_CERT, O_ISSUER_KEY, O_HELP };
	static const struct option options[] = {
		{ "key", required_argument, NULL, O_KEY },
		{ "cn", required_argument, NULL, O_CN },
		{ "san", required_argument, NULL, O_SAN },
		{ "not-before", required_argument, NULL, O_NB },
		{ "not-after", required_argument, NULL, O_NA },
		{ "md", required_argument, NULL, O_MD },
		{ "key-format", required_argument, NULL, O_KF },
		{ "password", required_argument, NULL, O_PW },
		{ "ca", no_argument, NULL, O_CA },
		{ "serial", required_argument, NULL, O_SERIAL },
		{ "cert-out", required_argument, NULL, O_CERT_OUT },
		{ "key-out", required_argument, NULL, O_KEY_OUT },
		{ "issuer-cert", required_argument, NULL, O_ISSUER_CERT },
		{ "issuer-key", required_argument, NULL, O_ISSUER_KEY },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const char *key_type = "p256", *nb_arg = "-3600", *na_arg = "7776000";
	const char *key_format = "pkcs8", *password = NULL, *cert_out = NULL, *key_out = NULL;
	const char *issuer_cert = NULL, *issuer_key = NULL;
	struct tc_cert_spec spec = { 0 };
	time_t now = time(NULL);
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	char *cert_pem = NULL, *key_pem = NULL;
	long long serial;
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (c) {
		case O_KEY: key_type = optarg; break;
		case O_CN: spec.cn = optarg; break;
		case O_SAN: spec.sans = optarg; break;
		case O_NB: nb_arg = optarg; break;
		case O_NA: na_arg = optarg; break;
		case O_MD: spec.md = optarg; break;
		case O_KF: key_format = optarg; break;
		case O_PW: password = optarg; break;
		case O_CA: spec.is_ca = 1; break;
		case O_SERIAL:
			if (parse_ll(optarg, 1, 0x7fffffffL, &serial) < 0)
				return bad_args("--serial %s: want 1 to 2147483647", optarg);
			spec.serial = (long)serial;
			break;
		case O_CERT_OUT: cert_out = optarg; break;
		case O_KEY_OUT: key_out = optarg; break;
		case O_ISSUER_CERT: issuer_cert = optarg; break;
		case O_ISSUER_KEY: issuer_key = optarg; break;
		case O_HELP: fputs(usage, stdout); return 0;
		default: return bad_args("%s", "unknown option");
		}
	}
	if (optind != argc)
		return bad_args("unexpected argument %s", argv[optind]);
	if (cert_out == NULL || key_out == NULL)
		return bad_args("%s", "--cert-out and --key-out are required");
	if (parse_when(nb_arg, now, &spec.not_before) < 0)
		return bad_args("--not-before %s: want seconds from now or @EPOCH", nb_arg);
	if (parse_when(na_arg, now, &spec.not_after) < 0)
		return bad_args("--not-after %s: want seconds from now or @EPOCH", na_arg);
	if ((issuer_cert == NULL) != (issuer_key == NULL))
		return bad_args("%s", "--issuer-cert and --issuer-key go together");
	if ((strcmp(key_format, "pkcs8enc") == 0) != (password != NULL))
		return bad_args("%s", "--password goes with --key-format pkcs8enc, and only it");
	if (strcmp(key_format, "pkcs8") != 0 && strcmp(key_format, "pkcs1") != 0 &&
	    strcmp(key_format, "sec1") != 0 && strcmp(key_format, "pkcs8enc") != 0)
		return bad_args("--key-format %s: want pkcs8, pkcs1, sec1 or pkcs8enc",
				key_format);
	if (spec.md != NULL && EVP_get_digestbyname(spec.md) == NULL)
		return bad_args("--md %s: unknown digest", spec.md);

	key = tc_key_new(key_type);
	if (key == NULL) {
		rc = bad_args("--key %s: unknown key type", key_type);
		goto out;
	}
	if ((strcmp(key_format, "pkcs1") == 0 && !EVP_PKEY_is_a(key, "RSA")) ||
	    (strcmp(key_format, "sec1") == 0 && !EVP_PKEY_is_a(key, "EC"))) {
		rc = bad_args("--key-format %s does not fit this key type", key_format);
		goto out;
	}
	if (issuer_cert != NULL && read_issuer(issuer_cert, issuer_key, &spec.issuer,
					       &spec.issuer_key) < 0)
		goto out;
	cert = tc_cert_new(key, &spec);
	if (cert == NULL) {
		fprintf(stderr, "cv-testcert: cannot make the certificate (digest %s with this "
			"key?)\n", spec.md != NULL ? spec.md : "sha256");
		goto out;
	}
	cert_pem = tc_cert_pem(cert);
	key_pem = tc_key_pem(key, key_format, password);
	if (cert_pem == NULL || key_pem == NULL) {
		fprintf(stderr, "cv-testcert: cannot write PEM\n");
		goto out;
	}
	if (write_file(key_out, key_pem, 0600) < 0 || write_file(cert_out, cert_pem, 0644) < 0)
		goto out;
	rc = 0;
out:
	if (key_pem != NULL)
		OPENSSL_cleanse(key_pem, strlen(key_pem));
	free(key_pem);
	free(cert_pem);
	X509_free(cert);
	X509_free(spec.issuer);
	EVP_PKEY_free(spec.issuer_key);
	EVP_PKEY_free(key);
	return rc;
}
