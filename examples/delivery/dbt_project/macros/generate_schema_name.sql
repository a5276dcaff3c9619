{#-
  Layer schemas are named as written (staging, features...), not prefixed with the target's.
  The orchestrator builds with var `wap_schema_suffix` ('_audit'), so models land in
  `staging_audit`, `features_audit`... where the tests audit them; it copies them to the plain
  schemas only after every error-severity check passed (write-audit-publish). Tests' stored
  metrics are not published, so they take no suffix. Standalone `dbt build` has no suffix.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set base = target.schema if custom_schema_name is none else custom_schema_name | trim -%}
    {%- if node.resource_type == 'test' -%}{{ base }}{%- else -%}{{ base }}{{ var('wap_schema_suffix', '') }}{%- endif -%}
{%- endmacro %}
