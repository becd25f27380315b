/* SPDX-License-Identifier: ISC */
/* libFuzzer target: the DNS response parser (answers come from the
 * network through libunbound). First byte picks the query type. */
#include "core.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t types[] = { OSP_DNS_A, OSP_DNS_AAAA, OSP_DNS_MX,
	    OSP_DNS_TXT, OSP_DNS_TLSA, OSP_DNS_PTR, OSP_DNS_CNAME };
	struct osp_dns_result res = { 0 };
	struct osp_pool *pool;
	const char *error;
	size_t i;

	if (size < 1)
		return 0;
	pool = osp_pool_new(NULL);
	if (osp_dns_parse(pool, data + 1, size - 1,
	    types[data[0] % (sizeof(types) / sizeof(types[0]))], &res,
	    &error) == OSP_OK) {
		/* Touch every record so ASan sees bad pointers. */
		for (i = 0; i < res.n; i++)
			if (res.rr[i].type == OSP_DNS_TXT &&
			    res.rr[i].u.txt.len > 0)
				(void)res.rr[i].u.txt.text[res.rr[i].u.txt.len - 1];
	}
	osp_pool_free(pool);
	return 0;
}
