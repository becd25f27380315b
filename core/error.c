/* SPDX-License-Identifier: ISC */
/* Text for OSP_* codes and -errno values. */
#include "core.h"

#include <string.h>

const char *
osp_strerror(int code)
{
	switch (code) {
	case OSP_OK:		return "success";
	case OSP_ERROR:		return "error";
	case OSP_AGAIN:		return "in progress";
	case OSP_DECLINED:	return "declined";
	case OSP_DONE:		return "done";
	case OSP_ETEMP:		return "temporary failure";
	case OSP_EPERM:		return "permanent failure";
	case OSP_EAUTH:		return "authentication failed";
	case OSP_ETOOBIG:	return "over limit";
	case OSP_EABI:		return "module ABI mismatch";
	case OSP_ECONFIG:	return "configuration error";
	case OSP_ETLS:		return "TLS error";
	case OSP_EDNS:		return "DNS failure";
	case OSP_EBOGUS:	return "DNSSEC validation failed";
	}
	if (code < 0 && code > -4096)
		return strerror(-code);	/* glibc: thread-safe for valid codes */
	return "unknown error";
}
