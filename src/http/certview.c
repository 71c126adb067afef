/* The one view of a certificate's own fields, shared by every answer that shows a
 * certificate (details, truststore entries, chain entries, previews), so that no screen has
 * to learn two shapes for one thing. */
#include "handlers.h"

static const char *key_type_name(enum cv_key_kind kind)
{
	switch (kind) {
	case CV_KEY_RSA:
		return "RSA";
	case CV_KEY_EC:
		return "EC";
	case CV_KEY_ED25519:
		return "OKP";
	}
	return "unknown";
}

json_t *cert_info_json(const struct cv_x509_info *info)
{
	return json_pack("{s:s, s:o, s:o, s:s, s:s, s:s, s:s, s:s,"
			 " s:{s:s, s:i, s:o, s:s},"
			 " s:o, s:o, s:{s:s, s:s}, s:b}",
			 "common_name", info->common_name, "domains",
			 strings_json(info->domains, info->n_domains), "ip_addresses",
			 strings_json(info->ips, info->n_ips), "subject", info->subject, "issuer",
			 info->issuer, "serial_number", info->serial, "signature_algorithm",
			 info->signature_algorithm, "signature_algorithm_name",
			 cv_x509_signature_algorithm_readable(info->signature_algorithm),
			 "public_key", "type", key_type_name(info->key_kind), "bits",
			 info->key_bits, "curve",
			 string_or_null(info->key_curve[0] != '\0' ? info->key_curve : NULL),
			 "description", info->key_description, "valid_from",
			 time_json(info->not_before), "valid_to", time_json(info->not_after),
			 "fingerprints", "sha256", info->sha256_fingerprint, "sha1",
			 info->sha1_fingerprint, "is_ca", info->is_ca != 0);
}

json_t *cert_info_status_json(const struct cv_x509_info *info, int64_t now,
			      int64_t soon_seconds)
{
	json_t *o = cert_info_json(info);

	if (o != NULL &&
	    (json_object_set_new(o, "status",
				 json_string(cv_status_name(cv_status_at(
					 info->not_before, info->not_after, (time_t)now,
					 soon_seconds)))) < 0 ||
	     json_object_set_new(o, "expires_in_days",
				 json_integer(cv_expires_in_days(info->not_after,
								 (time_t)now))) < 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}
