"""Real ERP data for Tenantry's tests, created and read back through Tryton itself.

Run with the Python of a Tryton virtualenv (it imports trytond and proteus of that series):

    python fixture.py REQUEST

REQUEST is a JSON object: {"command": "create" | "read", "database": ..., "config": ...,
and for "create" the sizes (see fixture.rs)}. The answer is one line on stdout: the prefix
"TENANTRY-FIXTURE " and a JSON object (Tryton may log on the same streams).

"create" makes, through Tryton's own models (proteus on the trytond backend, so every default,
on_change and workflow runs as it does for a user): a company with its currency, parties with
an address each, goods products, sale orders with lines (some quoted and confirmed), and
attachments with random binary content, which Tryton writes to its file store. Beyond that
real core, "bulk_sales" more sales with their lines are copied by SQL from a real confirmed
sale (INSERT ... SELECT generate_series), the only way to reach gigabytes in minutes.

"read" counts what the tests compare, through the same models (so attachments are read the
way the ERP reads them: a missing file store shows up here, not as an error).
"""
import hashlib
import json
import os
import sys
from decimal import Decimal

from proteus import Model, config


def main():
    request = json.loads(sys.argv[1])
    config.set_trytond(request['database'], config_file=request['config'])
    if request['command'] == 'create':
        answer = create(request)
    elif request['command'] == 'read':
        answer = read()
    else:
        raise SystemExit('unknown command %r' % request['command'])
    sys.stdout.write('TENANTRY-FIXTURE %s\n' % json.dumps(answer))


def create(size):
    current = config.get_config()
    User = Model.get('res.user')
    Party = Model.get('party.party')
    Currency = Model.get('currency.currency')
    Company = Model.get('company.company')

    currency = Currency(name='Euro', code='EUR', symbol='€',
        rounding=Decimal('0.01'), digits=2)
    currency.save()
    company_party = Party(name='Acme Trading')
    set_address(company_party, 0)
    company_party.save()
    company = Company(party=company_party, currency=currency)
    company.save()
    user = User(current.user)
    user.companies.append(Company(company.id))
    user.company = company
    user.save()
    current._context = User.get_preferences(True, {})

    parties = []
    for i in range(size['parties']):
        party = Party(name='Customer %d' % (i + 1))
        set_address(party, i + 1)
        party.save()
        parties.append(party)

    Uom = Model.get('product.uom')
    unit, = Uom.find([('name', '=', 'Unit')])
    Template = Model.get('product.template')
    products = []
    for i in range(size['products']):
        template = Template(name='Product %d' % (i + 1), type='goods',
            default_uom=unit, salable=True,
            list_price=Decimal('%d.%02d' % (10 + i, (i * 7) % 100)))
        template.save()
        products.append(template.products[0])

    Sale = Model.get('sale.sale')
    sales = []
    for i in range(size['sales']):
        sale = Sale(party=parties[i % len(parties)])
        # No invoice or shipment is generated, so no chart of accounts is needed.
        sale.invoice_method = 'manual'
        sale.shipment_method = 'manual'
        for j in range(size['lines_per_sale']):
            line = sale.lines.new()
            line.product = products[(i + j) % len(products)]
            line.quantity = j + 1
        sale.save()
        if i < size['confirmed_sales']:
            sale.click('quote')
            sale.click('confirm')
        sales.append(sale)

    Attachment = Model.get('ir.attachment')
    for i in range(size['attachments']):
        attachment = Attachment(name='scan-%d.bin' % (i + 1),
            resource=sales[i % len(sales)],
            data=os.urandom(size['attachment_bytes']))
        attachment.save()

    bulk = 0
    if size['bulk_sales']:
        bulk = bulk_sales(size['database'], size, sales, parties,
            size['confirmed_sales'] > 0)
    return {'company': company.id, 'bulk_sales': bulk}


def set_address(party, number):
    address = party.addresses[0] if party.addresses else party.addresses.new()
    # 8.x structures the street; its free-text field is `street_unstructured`.
    field = ('street_unstructured'
        if 'street_unstructured' in address._fields else 'street')
    setattr(address, field, '%d Market Street' % (number + 1))
    address.postal_code = '%05d' % (1000 + number)
    address.city = 'Liège'


def bulk_sales(database, size, sales, parties, confirmed):
    """Copies a real sale (with its first line) `bulk_sales` times by SQL, with
    `bulk_lines_per_sale` lines each; parties rotate over the real ones."""
    from trytond.transaction import Transaction
    template_sale = sales[0] if confirmed else sales[-1]
    template_line = template_sale.lines[0].id
    party_ids = [p.id for p in parties]
    address_ids = [p.addresses[0].id for p in parties]
    with Transaction().start(database, 0) as transaction:
        cursor = transaction.connection.cursor()
        cursor.execute('CREATE TEMP TABLE tenantry_bulk_sale '
            '(id integer, n bigint) ON COMMIT DROP')
        overrides = {
            'number': "'BULK-' || g",
            'reference': "'bulk order ' || g",
            # mod(), not %: the SQL still goes through the driver's % placeholders.
            'party': '(%s)[1 + mod(g, %d)]' % (array(party_ids), len(party_ids)),
            'invoice_party': 'NULL',
            'shipment_party': 'NULL',
            'invoice_address': '(%s)[1 + mod(g, %d)]' % (
                array(address_ids), len(address_ids)),
            'shipment_address': '(%s)[1 + mod(g, %d)]' % (
                array(address_ids), len(address_ids)),
            'create_date': 'now()',
            }
        columns, values = copy_columns(cursor, 'sale_sale', overrides, 't')
        cursor.execute(
            'WITH ins AS (INSERT INTO sale_sale (%s) SELECT %s '
            'FROM sale_sale t, generate_series(1, %%s) g WHERE t.id = %%s '
            'RETURNING id) '
            'INSERT INTO tenantry_bulk_sale '
            'SELECT id, row_number() OVER (ORDER BY id) FROM ins'
            % (columns, values), (size['bulk_sales'], template_sale.id))
        overrides = {
            'sale': 's.id',
            'sequence': 'l',
            'description': "'Bulk line ' || s.n || '.' || l || ' ' "
                "|| md5((s.n * 1000 + l)::text)",
            'create_date': 'now()',
            }
        columns, values = copy_columns(cursor, 'sale_line', overrides, 't')
        cursor.execute(
            'INSERT INTO sale_line (%s) SELECT %s '
            'FROM tenantry_bulk_sale s CROSS JOIN generate_series(1, %%s) l '
            'CROSS JOIN sale_line t WHERE t.id = %%s'
            % (columns, values), (size['bulk_lines_per_sale'], template_line))
    return size['bulk_sales']


def array(ids):
    return 'ARRAY[%s]::integer[]' % ','.join(str(int(i)) for i in ids)


def copy_columns(cursor, table, overrides, alias):
    "The column list of `table` but `id`, and the values copying row `alias`."
    cursor.execute('SELECT column_name FROM information_schema.columns '
        "WHERE table_schema = 'public' AND table_name = %s "
        "AND column_name <> 'id' ORDER BY ordinal_position", (table,))
    names = [row[0] for row in cursor.fetchall()]
    columns = ', '.join('"%s"' % n for n in names)
    values = ', '.join(
        overrides.get(n, '%s."%s"' % (alias, n)) for n in names)
    return columns, values


def read():
    def count(model):
        Class = Model.get(model)
        return Class._proxy.search_count([], Class._config.context)

    answer = {
        'companies': count('company.company'),
        'parties': count('party.party'),
        'addresses': count('party.address'),
        'products': count('product.product'),
        'sales': count('sale.sale'),
        'sale_lines': count('sale.line'),
        }
    Template = Model.get('product.template')
    context = Template._config.context
    ids = Template._proxy.search([], 0, None, None, context)
    prices = Template._proxy.read(ids, ['list_price'], context)
    answer['list_price_sum'] = str(
        sum((p['list_price'] or Decimal(0) for p in prices), Decimal(0)))

    Attachment = Model.get('ir.attachment')
    context = Attachment._config.context
    ids = Attachment._proxy.search([], 0, None, [('id', 'ASC')], context)
    digest = hashlib.sha256()
    total = 0
    for id_ in ids:
        # One at a time: a benchmark's attachments add up to hundreds of MB.
        record, = Attachment._proxy.read([id_], ['name', 'data'], context)
        data = bytes(record['data'] or b'')
        total += len(data)
        digest.update(('%s\0%d\0' % (record['name'], len(data))).encode())
        digest.update(hashlib.sha256(data).digest())
    answer['attachments'] = len(ids)
    answer['attachment_bytes'] = total
    answer['attachments_sha256'] = digest.hexdigest()
    return answer


if __name__ == '__main__':
    main()
