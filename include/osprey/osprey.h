/* SPDX-License-Identifier: ISC */
/* Umbrella header of the Osprey module ABI: include this in a module. */
#ifndef OSPREY_OSPREY_H
#define OSPREY_OSPREY_H

#include <osprey/error.h>
#include <osprey/pool.h>
#include <osprey/buf.h>
#include <osprey/str.h>
#include <osprey/log.h>
#include <osprey/conf.h>
#include <osprey/module.h>
#include <osprey/event.h>
#include <osprey/tls.h>
#include <osprey/conn.h>
#include <osprey/listener.h>
#include <osprey/dns.h>
#include <osprey/transport.h>
#include <osprey/sasl.h>
#include <osprey/http.h>
#include <osprey/hook.h>
#include <osprey/store.h>
#include <osprey/message.h>
#include <osprey/accounts.h>
#include <osprey/auth.h>
#include <osprey/limit.h>
#include <osprey/metrics.h>
#include <osprey/sendlog.h>
#include <osprey/smtp.h>

#endif
