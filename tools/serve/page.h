#pragma once
// The page served at GET /: tools/serve/page.html, embedded at build time (page_html.cpp.in).
namespace sd_serve {
extern const char* const kPageHtml;
}
