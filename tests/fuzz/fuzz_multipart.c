/* libFuzzer target: the multipart/form-data parser. The first byte picks a Content-Type
 * (a plain boundary, a quoted one, a long one, a broken one); the rest is the body. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/http/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const types[] = {
		"multipart/form-data; boundary=b",
		"multipart/form-data; boundary=\"a b:c\"",
		("multipart/form-data; boundary=0123456789012345678901234567890123456789012345678"
		 "901234567890123456789"),
		"multipart/form-data; boundary=",
	};
	struct http_part *parts = NULL;
	struct cv_errmsg err;
	size_t n = 0, i, sum = 0;
	char *body;

	if (size < 1)
		return 0;
	body = malloc(size);
	if (body == NULL)
		return 0;
	memcpy(body, data + 1, size - 1);
	body[size - 1] = '\0';
	if (http_multipart_parse(types[data[0] % 4], body, size - 1, &parts, &n, &err) == 0) {
		/* Every part lies inside the body. */
		for (i = 0; i < n; i++) {
			if (parts[i].data < body || parts[i].data + parts[i].len > body + size - 1)
				abort();
			sum += parts[i].len;
		}
		if (sum > size)
			abort();
		(void)http_multipart_find(parts, n, "certificate");
		free(parts);
	}
	free(body);
	return 0;
}
