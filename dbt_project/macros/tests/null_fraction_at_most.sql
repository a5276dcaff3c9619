{#- Generic test: the share of nulls in the column is at most max_fraction. Fails with one row
    naming the actual fraction, so the failure message carries expected and actual. -#}
{% test null_fraction_at_most(model, column_name, max_fraction) %}
with profile as (
    select
        count(*) as count_rows,
        count(*) - count({{ column_name }}) as count_nulls
    from {{ model }}
)

select
    count_nulls::double / nullif(count_rows, 0) as actual_null_fraction,
    {{ max_fraction }} as max_null_fraction
from profile
where count_nulls::double / nullif(count_rows, 0) > {{ max_fraction }}
{% endtest %}
